#include "util/json.h"

#include <string>

namespace util {
namespace {

std::string too_deep_text(int limit) {
    return "[json.exception.depth] the document nests deeper than " + std::to_string(limit) +
           " levels";
}

} // namespace

JsonTooDeep::JsonTooDeep(int limit) : exception(600, too_deep_text(limit).c_str()) {}

nlohmann::json parse_json(std::string_view text, bool allow_exceptions, int max_depth) {
    const auto limit = [max_depth](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
        if (depth > max_depth) {
            throw JsonTooDeep(max_depth);
        }
        return true;
    };
    try {
        return nlohmann::json::parse(text, limit, allow_exceptions);
    } catch (const JsonTooDeep&) {
        if (allow_exceptions) {
            throw;
        }
        return nlohmann::json(nlohmann::json::value_t::discarded);
    }
}

} // namespace util
