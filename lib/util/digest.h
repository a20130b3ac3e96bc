// SHA-256 digests of strings, streams and files (OpenSSL EVP).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace util {

// Incremental SHA-256: feed bytes with update(), read the digest once with finish().
class Sha256 {
  public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    Sha256(Sha256&&) noexcept;
    Sha256& operator=(Sha256&&) noexcept;

    void update(const void* data, std::size_t size);
    void update(std::string_view data) { update(data.data(), data.size()); }
    std::array<std::uint8_t, 32> finish();
    std::string finish_hex();

  private:
    struct State;
    std::unique_ptr<State> state_;
};

std::string to_hex(const std::uint8_t* data, std::size_t size);
std::string sha256_hex(std::string_view data);
// XXH3's 128-bit hash of `data` as 32 hex digits: about 20 times faster than SHA-256 but not
// collision resistant, so only for indexes whose hits are checked against the bytes they stand
// for (the squashfs block cache decompresses every hit and compares it with the block).
std::string xxh3_128_hex(std::string_view data);
// Streams the file through SHA-256; throws std::system_error naming the file on read errors.
std::string sha256_file_hex(const std::filesystem::path& file);

} // namespace util
