// JSON from other people (manifests, configs, registry and token answers, bundle manifests),
// parsed with a nesting limit: nlohmann's parser is iterative, but copying or comparing a value
// recurses once per level, so a document nested 100,000 deep would overflow the stack later.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

namespace util {

// Far deeper than any OCI, registry or edgeforge document (they are a few levels deep).
inline constexpr int k_max_json_depth = 64;

// Thrown by parse_json() for a document nested deeper than the limit; a json::exception, so
// that callers handling a parse error handle it the same way. what() reads
// "[json.exception.depth] the document nests deeper than 64 levels".
class JsonTooDeep : public nlohmann::json::exception {
  public:
    explicit JsonTooDeep(int limit);
};

// nlohmann::json::parse(text) with the nesting limit. With `allow_exceptions` false, a syntax
// error or a document that nests too deeply gives a discarded value (is_discarded()), as
// nlohmann's own parse does for syntax errors.
nlohmann::json parse_json(std::string_view text, bool allow_exceptions = true,
                          int max_depth = k_max_json_depth);

} // namespace util
