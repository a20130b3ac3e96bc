// AWS credentials and region from the environment and the shared ~/.aws files, as the AWS CLI
// finds them.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace edgeforge::cloud {

// The same shape as edgeforge::EnvironmentLookup, so a Config's lookup can be passed straight in.
using EnvironmentLookup = std::function<std::optional<std::string>(const std::string&)>;

// getenv, for callers that use the real process environment.
std::optional<std::string> process_environment(const std::string& name);

// Keys that sign requests. The secret and the session token are never printed: messages and logs
// use describe_credentials().
struct AwsCredentials {
    std::string access_key_id;
    std::string secret_access_key;
    std::string session_token; // empty for long-term keys
    std::string source;        // where they came from: "environment", "FILE [profile NAME]"
};

// "access key ...MPLE (environment)": safe to log, enough to tell which keys were used.
std::string describe_credentials(const AwsCredentials& credentials);

// AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), else the profile AWS_PROFILE
// (or "default") of the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, else
// ~/.aws/credentials). Throws a bad_input Error saying what was looked at and what to set.
AwsCredentials load_aws_credentials(const EnvironmentLookup& environment = process_environment);

// `explicit_region` when not empty, else AWS_REGION, AWS_DEFAULT_REGION, else the region of the
// profile AWS_PROFILE (or "default") in the shared config file (AWS_CONFIG_FILE, else
// ~/.aws/config). Throws a bad_input Error when there is none or it is not a region name.
std::string resolve_aws_region(std::string_view explicit_region,
                               const EnvironmentLookup& environment = process_environment);

} // namespace edgeforge::cloud
