// Making a finished file durable apart from writing it: a flush that can run while other work
// goes on, then a rename that survives a crash.
#pragma once

#include <filesystem>

namespace util {

// fsyncs `file`'s data and size. Throws std::system_error naming it.
void flush_file(const std::filesystem::path& file);

// fsyncs the directory `directory`, so that a rename into it survives a crash; a directory that
// cannot be opened is left alone (the rename itself has happened).
void flush_directory(const std::filesystem::path& directory);

// Renames `from` over `to` (same filesystem) and flushes `to`'s directory: with flush_file
// before, what AtomicFile::commit does. Throws std::system_error naming both.
void rename_durably(const std::filesystem::path& from, const std::filesystem::path& to);

} // namespace util
