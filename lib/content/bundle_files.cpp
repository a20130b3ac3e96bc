#include "content/bundle_files.h"

#include <algorithm>

#include "base/error.h"
#include "util/fs.h"

namespace edgeforge::content {
namespace stdfs = std::filesystem;

std::string read_checksum_file(const stdfs::path& file) {
    const std::string text = util::read_file(file);
    const auto hex = text.substr(0, std::min<std::size_t>(text.find_first_of(" \n"), text.size()));
    if (hex.size() != 64 || !std::all_of(hex.begin(), hex.end(), [](char c) {
            return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        })) {
        throw bad_input("{} is not a sha256sum line (HEX  NAME)", file.string());
    }
    return hex;
}


BundleFiles locate_bundle(const stdfs::path& given) {
    BundleFiles files;
    files.parts_index = split_bundle_index(given);
    if (files.parts_index) {
        files.archive = archive_of_parts_index(*files.parts_index);
        files.index = PartsIndex::read(*files.parts_index);
        for (const auto& part : files.index.parts) {
            files.parts.push_back(files.parts_index->parent_path() / part.name);
        }
        return files;
    }
    files.archive = given;
    std::error_code error;
    if (!stdfs::is_regular_file(given, error)) {
        throw bad_input("the bundle {} does not exist (nor {})", given.string(),
                        parts_index_path(given).string());
    }
    return files;
}

} // namespace edgeforge::content
