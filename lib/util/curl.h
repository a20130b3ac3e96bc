// libcurl handles owned by RAII, one-time global initialisation, and retry backoff delays.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <curl/curl.h>

namespace util {

struct CurlEasyDeleter {
    void operator()(CURL* handle) const { curl_easy_cleanup(handle); }
};
// One easy handle: a request at a time, with its own keep-alive connection cache.
using CurlEasy = std::unique_ptr<CURL, CurlEasyDeleter>;

struct CurlListDeleter {
    void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using CurlList = std::unique_ptr<curl_slist, CurlListDeleter>;

// curl_global_init exactly once per process (it is not thread-safe to call it more often).
void initialise_curl_once();

// A fresh easy handle; throws std::runtime_error when libcurl cannot make one.
CurlEasy new_curl_easy();

// Appends one header line ("Name: value") to `list`; throws std::bad_alloc on failure, when the
// list stays as it was and still owned by `list`.
void append_curl_header(CurlList& list, const std::string& line);

// The one retry policy of edgeforge's HTTP clients (registries and AWS): a transfer is tried
// again only after a failure that another attempt can cure - name resolution, connect, timeout,
// a connection dropped mid-transfer, HTTP/2 stream errors - never after TLS, certificate, URL
// or our own size-limit failures, which fail the same way every time.
bool is_transient_curl_error(CURLcode code);
// 429 Too Many Requests and 5xx server errors.
bool is_transient_http_status(long status);

// How long to wait before retry number `retry` (0-based): base * 2^retry capped at `ceiling`,
// with jitter between half and all of it so that concurrent clients spread out.
std::chrono::milliseconds backoff_delay(std::chrono::milliseconds base,
                                        std::chrono::milliseconds ceiling, int retry);

} // namespace util
