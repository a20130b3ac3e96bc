// Split content bundles: the parts index <name>.parts.json.
#include "content/parts.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <vector>

#include <fcntl.h>

#include <fmt/format.h>

#include "base/error.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/json.h"

namespace edgeforge::content {

namespace {
constexpr std::string_view k_index_suffix = ".parts.json";
} // namespace

nlohmann::json PartsIndex::to_json() const {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& part : parts) {
        list.push_back({{"name", part.name}, {"size", part.size}, {"sha256", part.sha256}});
    }
    return {{"name", name},
            {"size", size},
            {"sha256", sha256},
            {"splitSize", split_size},
            {"reassemble", naming == PartNaming::canvos
                               ? fmt::format("cat {}_part* > {}", name, name)
                               : fmt::format("cat {}.part-* > {}", name, name)},
            {"parts", list}};
}

PartsIndex PartsIndex::read(const std::filesystem::path& file) {
    std::string text;
    try {
        text = util::read_file(file);
    } catch (const std::system_error& error) {
        throw bad_input("cannot read the parts index {}: {}", file.string(),
                        error.code().message());
    }
    PartsIndex index;
    try {
        const auto json = util::parse_json(text);
        index.name = json.at("name").get<std::string>();
        index.size = json.at("size").get<std::uint64_t>();
        index.sha256 = json.at("sha256").get<std::string>();
        index.split_size = json.value("splitSize", std::uint64_t{0});
        for (const auto& part : json.at("parts")) {
            index.parts.push_back(BundlePart{part.at("name").get<std::string>(),
                                             part.at("size").get<std::uint64_t>(),
                                             part.at("sha256").get<std::string>()});
        }
    } catch (const nlohmann::json::exception& error) {
        throw bad_input("{} is not a parts index (as `edgeforge content build --split-size` "
                        "writes): {}",
                        file.string(), error.what());
    }
    if (!index.parts.empty() &&
        index.parts.front().name == part_name(index.name, 0, PartNaming::canvos)) {
        index.naming = PartNaming::canvos;
    }
    for (const auto& part : index.parts) {
        // Parts are looked up next to the index: a name with a directory could point anywhere.
        if (part.name.empty() || part.name.find('/') != std::string::npos || part.name == "..") {
            throw bad_input("{}: the part name '{}' is not a file name", file.string(), part.name);
        }
    }
    return index;
}

std::filesystem::path parts_index_path(const std::filesystem::path& archive) {
    return std::filesystem::path(archive.string() + std::string(k_index_suffix));
}

bool is_parts_index(const std::filesystem::path& file) {
    return file.string().ends_with(k_index_suffix);
}

std::filesystem::path archive_of_parts_index(const std::filesystem::path& index) {
    const std::string text = index.string();
    return is_parts_index(index) ? text.substr(0, text.size() - k_index_suffix.size()) : text;
}

std::optional<std::filesystem::path> split_bundle_index(const std::filesystem::path& bundle) {
    if (is_parts_index(bundle)) {
        return bundle;
    }
    std::error_code error;
    if (!std::filesystem::exists(bundle, error) &&
        std::filesystem::exists(parts_index_path(bundle), error)) {
        return parts_index_path(bundle);
    }
    return std::nullopt;
}

std::string part_name(const std::string& archive_name, std::uint64_t number,
                      PartNaming naming) {
    if (naming == PartNaming::edgeforge) {
        return fmt::format("{}.part-{:03}", archive_name, number);
    }
    // GNU split's numeric suffixes grow when the two digits run out: group k holds 9 * 10^(k+1)
    // names of k nines followed by k + 2 digits (00-89, 9000-9899, 990000-998999, ...).
    std::string nines;
    std::uint64_t digits = 2;
    std::uint64_t group_size = 90;
    while (number >= group_size) {
        number -= group_size;
        nines += '9';
        ++digits;
        group_size *= 10;
    }
    return fmt::format("{}_part{}{:0{}}", archive_name, nines, number, digits);
}

PartsIndex split_into_parts(
    const std::filesystem::path& archive, std::uint64_t split_size,
    const std::function<void(const char* data, std::size_t size)>& on_bytes,
    const std::function<void(const BundlePart& part, std::uint64_t offset)>& on_part,
    PartNaming naming) {
    util::FileDescriptor fd(::open(archive.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        throw build_failed("cannot read {}: {}", archive.string(), std::strerror(errno));
    }
    std::error_code error;
    const std::uint64_t size = std::filesystem::file_size(archive, error);
    if (error) {
        throw build_failed("cannot read {}: {}", archive.string(), error.message());
    }
    const std::string name = archive.filename().string();
    PartsIndex index{name, size, {}, split_size, {}, naming};
    util::Sha256 whole;
    std::vector<char> buffer(1u << 20);
    for (std::uint64_t offset = 0, number = 0; offset < size; offset += split_size, ++number) {
        const std::uint64_t part_size = std::min(split_size, size - offset);
        util::Sha256 hasher;
        for (std::uint64_t done = 0; done < part_size;) {
            const auto chunk =
                static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), part_size - done));
            if (!util::pread_exact(fd.get(), buffer.data(), chunk, offset + done)) {
                throw build_failed("{} shrank while it was being split", archive.string());
            }
            hasher.update(buffer.data(), chunk);
            whole.update(buffer.data(), chunk);
            if (on_bytes) {
                on_bytes(buffer.data(), chunk);
            }
            done += chunk;
        }
        index.parts.push_back(
            BundlePart{part_name(name, number, naming), part_size, hasher.finish_hex()});
        if (on_part) {
            on_part(index.parts.back(), offset);
        }
    }
    index.sha256 = whole.finish_hex();
    return index;
}

} // namespace edgeforge::content
