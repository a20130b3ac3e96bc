// SHA-256 digests of strings, streams and files (OpenSSL EVP).
#include "util/digest.h"

#include <cerrno>
#include <fstream>
#include <stdexcept>
#include <system_error>
#include <vector>

#include <openssl/evp.h>
#include <xxhash.h>

namespace util {

struct Sha256::State {
    EVP_MD_CTX* context = nullptr;
    ~State() { EVP_MD_CTX_free(context); }
};

Sha256::Sha256() : state_(std::make_unique<State>()) {
    state_->context = EVP_MD_CTX_new();
    if (state_->context == nullptr ||
        EVP_DigestInit_ex(state_->context, EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("OpenSSL: cannot initialise SHA-256");
    }
}

Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(const void* data, std::size_t size) {
    if (size != 0 && EVP_DigestUpdate(state_->context, data, size) != 1) {
        throw std::runtime_error("OpenSSL: SHA-256 update failed");
    }
}

std::array<std::uint8_t, 32> Sha256::finish() {
    std::array<std::uint8_t, 32> digest{};
    unsigned int length = 0;
    if (EVP_DigestFinal_ex(state_->context, digest.data(), &length) != 1 || length != 32) {
        throw std::runtime_error("OpenSSL: SHA-256 final failed");
    }
    return digest;
}

std::string Sha256::finish_hex() {
    const auto digest = finish();
    return to_hex(digest.data(), digest.size());
}

std::string to_hex(const std::uint8_t* data, std::size_t size) {
    static constexpr char k_digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(size * 2);
    for (std::size_t i = 0; i < size; ++i) {
        out.push_back(k_digits[data[i] >> 4]);
        out.push_back(k_digits[data[i] & 0x0f]);
    }
    return out;
}

std::string xxh3_128_hex(std::string_view data) {
    const XXH128_hash_t hash = XXH3_128bits(data.data(), data.size());
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, hash);
    return to_hex(canonical.digest, sizeof canonical.digest);
}

std::string sha256_hex(std::string_view data) {
    Sha256 hasher;
    hasher.update(data);
    return hasher.finish_hex();
}

std::string sha256_file_hex(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        throw std::system_error(errno, std::generic_category(), "cannot read " + file.string());
    }
    Sha256 hasher;
    std::vector<char> buffer(1 << 20);
    while (in) {
        in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
        hasher.update(buffer.data(), static_cast<std::size_t>(in.gcount()));
    }
    if (in.bad()) {
        throw std::system_error(errno, std::generic_category(), "error reading " + file.string());
    }
    return hasher.finish_hex();
}

} // namespace util
