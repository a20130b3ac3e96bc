// Unit tests for build/keys: `keys generate` as a command: the default key directory,
// SOURCE_DATE_EPOCH, bad flags, and a --json document without key material.
#include <doctest/doctest.h>

#include "build/keys.h"
#include "support/env.h"
#include "support/errors.h"
#include "util/fs.h"

using namespace edgeforge;
using edgeforge::testing::error_of;
using edgeforge::testing::ScopedEnv;

TEST_CASE("keys generate: secureboot-keys/ in the project, SOURCE_DATE_EPOCH, no key material") {
    util::TempDir project;
    ScopedEnv epoch("SOURCE_DATE_EPOCH", "1700000000");
    KeysRequest request;
    request.org = "ACME";
    const CommandOutcome outcome = run_keys_generate(request, project.path());
    CHECK(outcome.code == 0);
    CHECK(std::filesystem::is_regular_file(project.path() / "secureboot-keys" / "db.auth"));
    CHECK(outcome.document["not_before"] == "2023-11-14T22:13:20Z");
    CHECK(outcome.document["not_after"] == "2038-11-10T22:13:20Z");
    CHECK(outcome.document["owner_guid"] ==
          util::read_file(project.path() / "secureboot-keys" / "GUID.txt").substr(0, 36));
    CHECK(outcome.document["files"].size() == secureboot::key_directory_file_names().size());
    CHECK(outcome.document.dump().find("PRIVATE KEY") == std::string::npos);
    CHECK(outcome.text.find("PRIVATE KEY") == std::string::npos);
    CHECK(outcome.text.find(outcome.document["owner_guid"].get<std::string>()) !=
          std::string::npos);
}

TEST_CASE("keys generate: bad SOURCE_DATE_EPOCH and --key-type are bad input, nothing written") {
    util::TempDir project;
    KeysRequest request;
    {
        ScopedEnv epoch("SOURCE_DATE_EPOCH", "yesterday");
        CHECK(error_of([&] { run_keys_generate(request, project.path()); }, ExitCode::bad_input)
                  .find("SOURCE_DATE_EPOCH") != std::string::npos);
    }
    request.key_type = "ed25519";
    CHECK(error_of([&] { run_keys_generate(request, project.path()); }, ExitCode::bad_input)
              .find("--key-type") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(project.path() / "secureboot-keys"));
}
