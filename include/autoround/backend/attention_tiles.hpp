#pragma once
// Causal attention tiles: flash attention's saving for an attention computed as GEMMs. A
// [seqlen, seqlen] score square is causal (row t reads keys 0..t) and, with a sliding window w,
// banded (keys t − w + 1..t). The query rows are cut into tiles; tile i computes only the keys
// [lo, r1) (r1: its last row + 1; lo: the start of the tile that holds its first row's window
// start, 0 without a window), so the GEMMs skip the masked upper part of the square and what lies
// before a window. At 8 tiles that is 28 of the square's 64 parts (44%) of the attention's
// products and bytes. The backward's key-side products (dK = dSᵀQ, dV = PᵀdO) go by key tile: the
// keys [r0, r1) are read by the query rows [r0, q_end) of the query tiles whose lo ≤ r0.
// Used by the CUDA block run (backend/cuda/block_tuning_run.cuh) and its softmax kernels.
#include <algorithm>
#include <vector>

#include "../core/config.hpp"

namespace autoround {

/// Query rows [r0, r1) reading keys [lo, r1); as a key tile, keys [r0, r1) read by query rows [r0, q_end).
struct AttentionTile {
  long r0, r1, lo, q_end;
};

/// The first key a tile starting at row `first_row` reads: the start of the tile (of `tile` rows)
/// holding the row's window start; 0 without a window (`window` ≤ 0). Tile-aligned, so that a
/// key tile is either wholly inside a query tile's keys or wholly outside every window of it.
AUTOROUND_HOST_DEVICE inline long tile_first_key(long first_row, long tile, long window) {
  return window > 0 && first_row - window + 1 > 0 ? (first_row - window + 1) / tile * tile : 0;
}

/// Query rows per tile: `asked` (> 0; at most the sequence), else the sequence in about 8 tiles of
/// a multiple of 64 rows (up to 128 tokens: one tile, too small to gain).
inline long attention_tile_rows(long seqlen, long asked = 0) {
  if (asked > 0) return std::min(asked, seqlen);
  if (seqlen <= 128) return seqlen;
  return std::max(64L, (seqlen / 8 + 63) / 64 * 64);
}

/// The tiles of a sequence of `seqlen` rows cut every `tile` rows (the last may be shorter).
inline std::vector<AttentionTile> attention_tiles(long seqlen, long tile, long window) {
  std::vector<AttentionTile> tiles;
  for (long r0 = 0; r0 < seqlen; r0 += tile) tiles.push_back({r0, std::min(r0 + tile, seqlen), tile_first_key(r0, tile, window), 0});
  for (AttentionTile& key : tiles)
    for (const AttentionTile& query : tiles)
      if (query.r0 >= key.r0 && query.lo <= key.r0) key.q_end = query.r1;  // lo grows with r0: a run of tiles
  return tiles;
}

/// The share of the square the tiles compute, Σ (r1 − r0)(r1 − lo) / seqlen² (for FLOP counts).
inline double attention_tile_share(long seqlen, long tile, long window) {
  double area = 0;
  for (const AttentionTile& t : attention_tiles(seqlen, tile, window)) area += static_cast<double>(t.r1 - t.r0) * static_cast<double>(t.r1 - t.lo);
  return area / (static_cast<double>(seqlen) * static_cast<double>(seqlen));
}

}  // namespace autoround
