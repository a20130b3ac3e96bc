// libcurl handles owned by RAII, one-time global initialisation, and retry backoff delays.
#include "util/curl.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <new>
#include <random>
#include <stdexcept>

namespace util {

void initialise_curl_once() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

CurlEasy new_curl_easy() {
    initialise_curl_once();
    CurlEasy handle(curl_easy_init());
    if (!handle) {
        throw std::runtime_error("libcurl: cannot create a handle");
    }
    return handle;
}

void append_curl_header(CurlList& list, const std::string& line) {
    curl_slist* head = curl_slist_append(list.get(), line.c_str());
    if (head == nullptr) {
        throw std::bad_alloc();
    }
    static_cast<void>(list.release());
    list.reset(head);
}

std::chrono::milliseconds backoff_delay(std::chrono::milliseconds base,
                                        std::chrono::milliseconds ceiling, int retry) {
    thread_local std::mt19937_64 random{std::random_device{}()};
    const double cap = std::min(static_cast<double>(ceiling.count()),
                                static_cast<double>(base.count()) * std::pow(2.0, retry));
    std::uniform_real_distribution<double> fraction(0.5, 1.0);
    return std::chrono::milliseconds(static_cast<long long>(cap * fraction(random)));
}

bool is_transient_curl_error(CURLcode code) {
    switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

bool is_transient_http_status(long status) {
    return status == 429 || status >= 500;
}

} // namespace util
