// OpenSSL handles owned by RAII, and the last OpenSSL error in words.
#include "util/openssl.h"

#include <openssl/err.h>

namespace util {

std::string openssl_message(std::string_view when_none) {
    const unsigned long code = ERR_peek_last_error();
    ERR_clear_error();
    if (code == 0) {
        return std::string(when_none);
    }
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    return text;
}

} // namespace util
