// Unit tests for core/console.
#include <doctest/doctest.h>

#include "base/console.h"

using namespace edgeforge;

TEST_CASE("progress bar shows bytes, percent and ETA") {
    CHECK(render_progress_bar("squashfs", 0, 100 << 20, 0.0, 10) ==
          "squashfs  [..........]   0%  0 B / 100.0 MiB  ETA --");
    CHECK(render_progress_bar("squashfs", 50 << 20, 100 << 20, 10.0, 10) ==
          "squashfs  [#####.....]  50%  50.0 MiB / 100.0 MiB  ETA 10s");
    CHECK(render_progress_bar("iso", 7, 7, 3.0, 4) == "iso  [####] 100%  7 B / 7 B  ETA 0s");
}

TEST_CASE("progress style follows the terminal, --json, --quiet and --no-progress") {
    CHECK(Console({.stderr_is_terminal = true}).progress_style() == ProgressStyle::bar);
    CHECK(Console({.stderr_is_terminal = false}).progress_style() == ProgressStyle::lines);
    CHECK(Console({.json = true, .stderr_is_terminal = true}).progress_style() ==
          ProgressStyle::json);
    CHECK(Console({.verbosity = Verbosity::quiet, .stderr_is_terminal = true}).progress_style() ==
          ProgressStyle::none);
    CHECK(Console({.progress = false, .stderr_is_terminal = true}).progress_style() ==
          ProgressStyle::none);
}
