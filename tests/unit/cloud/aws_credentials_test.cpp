// Unit tests for cloud/aws_credentials: precedence, the shared files, and messages without secrets.
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "cloud/aws_credentials.h"
#include "support/errors.h"
#include "util/fs.h"

using namespace edgeforge;
using namespace edgeforge::cloud;

namespace {

const std::string k_secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

// A scratch HOME and an injected environment, so the tests never read the real ~/.aws.
struct AwsHome {
    util::TempDir dir;
    std::map<std::string, std::string> environment{{"HOME", dir.path().string()}};

    void write(const std::string& relative, const std::string& content) {
        std::filesystem::create_directories((dir.path() / relative).parent_path());
        util::write_file_atomically(dir.path() / relative, content);
    }
    EnvironmentLookup lookup() const {
        return [env = environment](const std::string& name) -> std::optional<std::string> {
            const auto it = env.find(name);
            return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
        };
    }
    AwsCredentials credentials() const { return load_aws_credentials(lookup()); }
    std::string credentials_error() const {
        return stable(testing::error_of([&] { credentials(); }, ExitCode::bad_input));
    }
    std::string region_error(std::string_view explicit_region = "") const {
        return stable(testing::error_of([&] { resolve_aws_region(explicit_region, lookup()); },
                                        ExitCode::bad_input));
    }
    std::string stable(std::string text) const {
        const std::string root = dir.path().string();
        for (auto pos = text.find(root); pos != std::string::npos; pos = text.find(root)) {
            text.replace(pos, root.size(), "<home>");
        }
        return text;
    }
};

} // namespace

TEST_CASE("aws credentials come from the environment first") {
    AwsHome home;
    home.write(".aws/credentials", "[default]\naws_access_key_id = FILEKEY\n"
                                   "aws_secret_access_key = filesecret\n");
    home.environment["AWS_ACCESS_KEY_ID"] = "AKIDEXAMPLE";
    home.environment["AWS_SECRET_ACCESS_KEY"] = k_secret;
    home.environment["AWS_SESSION_TOKEN"] = "token";
    const auto credentials = home.credentials();
    CHECK(credentials.access_key_id == "AKIDEXAMPLE");
    CHECK(credentials.secret_access_key == k_secret);
    CHECK(credentials.session_token == "token");
    CHECK(credentials.source == "environment");
    CHECK(describe_credentials(credentials) ==
          "access key ...MPLE with session token (environment)");
}

TEST_CASE("aws credentials: half a key pair in the environment is an error, not a fallback") {
    AwsHome home;
    home.environment["AWS_SECRET_ACCESS_KEY"] = k_secret;
    const std::string message = home.credentials_error();
    CHECK(message == "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not: set both (and "
                     "AWS_SESSION_TOKEN for temporary credentials), or unset both to use "
                     "~/.aws/credentials");
    CHECK(message.find(k_secret) == std::string::npos);
}

TEST_CASE("aws credentials from the shared credentials file, default and named profiles") {
    AwsHome home;
    home.write(".aws/credentials", "# comment\n"
                                   "[default]\n"
                                   "aws_access_key_id = DEFAULTKEY\n"
                                   "aws_secret_access_key=defaultsecret\r\n"
                                   "\n"
                                   "[prod]\n"
                                   "; another comment\n"
                                   "AWS_ACCESS_KEY_ID = PRODKEY\n"
                                   "aws_secret_access_key = prod/secret+x=\n"
                                   "aws_session_token = prodtoken\n");
    auto credentials = home.credentials();
    CHECK(credentials.access_key_id == "DEFAULTKEY");
    CHECK(credentials.secret_access_key == "defaultsecret");
    CHECK(credentials.session_token.empty());
    CHECK(home.stable(credentials.source) == "<home>/.aws/credentials [default]");

    home.environment["AWS_PROFILE"] = "prod";
    credentials = home.credentials();
    CHECK(credentials.access_key_id == "PRODKEY");
    CHECK(credentials.secret_access_key == "prod/secret+x=");
    CHECK(credentials.session_token == "prodtoken");

    home.environment["AWS_PROFILE"] = "staging";
    CHECK(home.credentials_error() ==
          "AWS profile 'staging' (from AWS_PROFILE) is not in <home>/.aws/credentials (profiles "
          "there: default, prod): fix AWS_PROFILE or add a [staging] section");
}

TEST_CASE("aws credentials: AWS_SHARED_CREDENTIALS_FILE moves the file and must exist") {
    AwsHome home;
    home.write("elsewhere/creds", "[default]\naws_access_key_id = K\naws_secret_access_key = S\n");
    home.environment["AWS_SHARED_CREDENTIALS_FILE"] =
        (home.dir.path() / "elsewhere/creds").string();
    CHECK(home.credentials().access_key_id == "K");
    home.environment["AWS_SHARED_CREDENTIALS_FILE"] = (home.dir.path() / "missing").string();
    CHECK(home.credentials_error() == "cannot read the AWS credentials file <home>/missing (from "
                                      "AWS_SHARED_CREDENTIALS_FILE)");
}

TEST_CASE("aws credentials: nothing found says what was looked at and what to set") {
    AwsHome home;
    CHECK(home.credentials_error() ==
          "no AWS credentials found: looked at AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (not set) "
          "and profile [default] in <home>/.aws/credentials (not found); set AWS_ACCESS_KEY_ID and "
          "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials), or add the "
          "profile to the credentials file (AWS_PROFILE and AWS_SHARED_CREDENTIALS_FILE choose "
          "another profile or file)");
    home.write(".aws/credentials", "[other]\naws_access_key_id = K\naws_secret_access_key = S\n");
    CHECK(home.credentials_error().find("in <home>/.aws/credentials (no such profile)") !=
          std::string::npos);
}

TEST_CASE("aws credentials: file errors name file:line and never quote the line") {
    AwsHome home;
    home.write(".aws/credentials", "[default]\naws_access_key_id = K\n" + k_secret + "\n");
    std::string message = home.credentials_error();
    CHECK(message == "<home>/.aws/credentials:3: expected 'key = value' or '[section]'");
    CHECK(message.find(k_secret) == std::string::npos);

    home.write(".aws/credentials", "aws_secret_access_key = " + k_secret + "\n");
    message = home.credentials_error();
    CHECK(message == "<home>/.aws/credentials:1: setting before the first [section]");
    CHECK(message.find(k_secret) == std::string::npos);

    home.write(".aws/credentials", "[default\n");
    CHECK(home.credentials_error() ==
          "<home>/.aws/credentials:1: section header without a closing ']'");

    home.write(".aws/credentials", "\n[default]\naws_access_key_id = K\n");
    CHECK(home.credentials_error() ==
          "<home>/.aws/credentials:2: profile [default] has no aws_secret_access_key: add "
          "'aws_access_key_id = ...' and 'aws_secret_access_key = ...' to it");
}

TEST_CASE("aws region: explicit, then AWS_REGION, AWS_DEFAULT_REGION, then ~/.aws/config") {
    AwsHome home;
    home.write(".aws/config", "[default]\nregion = eu-central-1\n"
                              "s3 =\n  max_concurrent_requests = 20\n"
                              "[profile prod]\nregion = us-west-2\n");
    CHECK(resolve_aws_region("", home.lookup()) == "eu-central-1");
    home.environment["AWS_PROFILE"] = "prod";
    CHECK(resolve_aws_region("", home.lookup()) == "us-west-2");
    home.environment["AWS_DEFAULT_REGION"] = "ap-south-1";
    CHECK(resolve_aws_region("", home.lookup()) == "ap-south-1");
    home.environment["AWS_REGION"] = "eu-west-1";
    CHECK(resolve_aws_region("", home.lookup()) == "eu-west-1");
    CHECK(resolve_aws_region("us-east-2", home.lookup()) == "us-east-2");
}

TEST_CASE("aws region: missing or malformed regions are errors that say what to set") {
    AwsHome home;
    CHECK(home.region_error() ==
          "no AWS region: looked at an explicit region, AWS_REGION, AWS_DEFAULT_REGION (not set) "
          "and 'region' in [default] of <home>/.aws/config (not found); pass a region, set "
          "AWS_REGION, or add 'region = ...' to that section");
    home.write(".aws/config", "[profile prod]\nregion = us-west-2\n");
    home.environment["AWS_PROFILE"] = "dev";
    CHECK(home.region_error().find("'region' in [profile dev] of <home>/.aws/config (not set "
                                   "there)") != std::string::npos);
    home.write(".aws/config", "[default]\nregion = eu-west-1.evil.com/x\n");
    home.environment.erase("AWS_PROFILE");
    CHECK(home.region_error() == "AWS region 'eu-west-1.evil.com/x' (from "
                                 "<home>/.aws/config:2) is not a region name such as eu-west-1");
    CHECK(home.region_error("EU WEST") ==
          "AWS region 'EU WEST' (given explicitly) is not a region name such as eu-west-1");
}
