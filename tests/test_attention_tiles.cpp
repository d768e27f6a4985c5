// Causal attention tiles (backend/attention_tiles.hpp), checked pair by pair against the mask
// they stand for: every (query, key) pair that causal attention with the window reads must lie
// in its query tile's computed keys and in its key tile's query rows, and every entry a key
// tile's GEMM reads must be one its query tile wrote (else the backward would read garbage).
#include <doctest/doctest.h>

#include <autoround/backend/attention_tiles.hpp>
#include <string>

namespace test_attention_tiles {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

const AttentionTile& tile_of(const std::vector<AttentionTile>& tiles, long row) {
  for (const AttentionTile& t : tiles)
    if (row >= t.r0 && row < t.r1) return t;
  FAIL("row " << row << " in no tile");
  return tiles.front();
}

TEST_CASE("causal tiles cover every pair the mask reads, and the key side reads only what the query side wrote") {
  for (const long seqlen : {1L, 5L, 24L, 100L, 257L})
    for (const long tile : {1L, 3L, 5L, 7L, 64L, 300L})
      for (const long window : {0L, 1L, 4L, 8L, 16L, 130L}) {
        CAPTURE(seqlen);
        CAPTURE(tile);
        CAPTURE(window);
        const std::vector<AttentionTile> tiles = attention_tiles(seqlen, tile, window);
        long rows = 0;
        for (const AttentionTile& t : tiles) {
          CHECK(t.r0 == rows);  // a partition of the rows, in order
          CHECK(t.r1 - t.r0 == std::min(tile, seqlen - t.r0));
          CHECK(t.lo % tile == 0);
          CHECK(t.q_end >= t.r1);
          rows = t.r1;
        }
        CHECK(rows == seqlen);
        long missed = 0, garbage = 0;
        for (long q = 0; q < seqlen; ++q)
          for (long k = 0; k <= q; ++k) {
            const bool read = window <= 0 || q - k < window;
            const AttentionTile &query = tile_of(tiles, q), &key = tile_of(tiles, k);
            const bool computed = k >= query.lo && k < query.r1;  // S, P, dP, dS written; O and dQ sum over them
            const bool key_side = q >= key.r0 && q < key.q_end;   // dK, dV sum over these rows
            if (read && (!computed || !key_side)) ++missed;
            if (key_side && !computed) ++garbage;
          }
        // the key side also reads q < k inside a diagonal tile: written (as 0) by the query tile
        for (const AttentionTile& key : tiles)
          for (long q = key.r0; q < key.q_end; ++q) {
            const AttentionTile& query = tile_of(tiles, q);
            if (key.r0 < query.lo || key.r1 > query.r1) ++garbage;
          }
        CHECK(missed == 0);
        CHECK(garbage == 0);
      }
}

TEST_CASE("causal tiles: the default size, and the share of the square they compute") {
  CHECK(attention_tile_rows(24) == 24);  // short sequences: one tile (the whole square)
  CHECK(attention_tile_rows(128) == 128);
  CHECK(attention_tile_rows(256) == 64);
  CHECK(attention_tile_rows(2048) == 256);
  CHECK(attention_tile_rows(2000) == 256);  // ceil(250 / 64) · 64
  CHECK(attention_tile_rows(2048, 100) == 100);
  CHECK(attention_tile_rows(50, 100) == 50);
  // 8 tiles of 256: (1 + 2 + … + 8) / 64 of the square; one tile: all of it
  CHECK(attention_tile_share(2048, 256, 0) == doctest::Approx(36.0 / 64.0));
  CHECK(attention_tile_share(2048, 2048, 0) == doctest::Approx(1.0));
  // a window of 512 at tiles of 256: tile i computes keys from tile max(0, i − 2) on: 1, 2, 3, 3, …
  CHECK(attention_tile_share(2048, 256, 512) == doctest::Approx((1.0 + 2 + 3 * 6) / 64.0));
}

}  // namespace test_attention_tiles
