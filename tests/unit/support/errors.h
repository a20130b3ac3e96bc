// Test support: the message of the edgeforge::Error an action throws.
#pragma once

#include <doctest/doctest.h>

#include <string>

#include "base/error.h"

namespace edgeforge::testing {

// The message of the edgeforge::Error `action` throws, checking its exit code; fails the test
// when nothing is thrown.
template <typename Action> std::string error_of(Action&& action, ExitCode code) {
    try {
        action();
    } catch (const Error& error) {
        CHECK(error.code() == code);
        return error.what();
    }
    FAIL("expected an edgeforge::Error");
    return {};
}

} // namespace edgeforge::testing
