//! Tiled inference: any image size in bounded memory, with invisible seams.
//!
//! The image is cut into overlapping windows of at most `tile` pixels per side. Each window's
//! output is weighted by a window that is zero over the quarter of the overlap nearest an inner
//! edge (where the network's zero padding shows), ramps up linearly over the next half, and is
//! one elsewhere; the weighted outputs are summed and normalised. Image borders are not inner
//! edges, so they keep full weight.

use crate::error::ModelError;

/// GPU bytes per tile pixel of the largest buffer the network allocates: the 128-channel f32
/// output of the fused LSTM gate conv (burn-cubecl's 3x3 convs are direct or implicit GEMM, so
/// no im2col buffer is materialised), times 2 for safety (layout copies, allocator pages).
pub const GPU_BYTES_PER_PIXEL: u64 = 128 * 4 * 2;

/// Smallest GPU tile side. Real adapters (128 MiB per binding at least) get 360 or more; only
/// a forced tiny limit (the tests') reaches the minimum.
pub const MIN_GPU_TILE: usize = 64;
/// Largest GPU tile side: above it a tile's many live feature maps strain a small GPU's total
/// memory for little gain.
pub const MAX_GPU_TILE: usize = 512;

/// Tile side (multiple of 8) whose largest buffer fits both of a GPU adapter's limits
/// (`maxStorageBufferBindingSize` and `maxBufferSize` in WebGPU's terms): the one planner of
/// the page and of `brn --device gpu`.
pub fn tile_for_gpu_limits(max_storage_binding: u64, max_buffer: u64) -> usize {
    let bytes = max_storage_binding.min(max_buffer);
    let side = ((bytes / GPU_BYTES_PER_PIXEL) as f64).sqrt() as usize;
    (side / 8 * 8).clamp(MIN_GPU_TILE, MAX_GPU_TILE)
}

/// Overlap between tiles of side `tile`: the default (64), or half a tile for tiles under 128.
pub fn overlap_for(tile: usize) -> usize {
    DEFAULT_OVERLAP.min(tile / 2)
}

/// One window of a [`TilePlan`], in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Left edge.
    pub x: usize,
    /// Top edge.
    pub y: usize,
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
}

/// Default overlap between neighbouring tiles, in pixels.
pub const DEFAULT_OVERLAP: usize = 64;

/// The window side along an axis of length `len`: as few windows as sides of `tile` need
/// (overlapping by `overlap`), each shrunk to the smallest side that still covers the axis with
/// that overlap. The count is the same as at `tile`, the pixels computed fewer (a 512-pixel
/// side takes 3 windows of 214 instead of 3 of 256: 16 % less on that axis).
fn side(len: usize, tile: usize, overlap: usize) -> usize {
    if len <= tile {
        return len;
    }
    let n = count(len, tile, overlap);
    (len + (n - 1) * overlap).div_ceil(n)
}

/// Windows along an axis of length `len` at side `tile` overlapping by `overlap`.
fn count(len: usize, tile: usize, overlap: usize) -> usize {
    if len <= tile {
        1
    } else {
        (len - overlap).div_ceil(tile - overlap)
    }
}

/// The tile side, from `min` up to `max` (by 8, with [`overlap_for`]'s overlap), that gets a
/// `width` x `height` image done soonest by `workers` equal workers each taking the next tile:
/// the fewest rounds (the plan's tiles over the workers, rounded up) times the pixels of one
/// of its fitted tiles ([`TilePlan::new`]). On one worker that is the plan computing the
/// fewest pixels, the largest tile; on several, tiles enough that every worker is busy until
/// the last round. Ties go to the larger side.
pub fn balanced_tile(width: usize, height: usize, workers: usize, [min, max]: [usize; 2]) -> usize {
    let workers = workers.max(1);
    // From `max` down: `min_by_key` keeps the first of equal costs, the larger side.
    (min.max(1)..=max)
        .rev()
        .step_by(8)
        .min_by_key(|&tile| {
            let overlap = overlap_for(tile);
            let pixels = side(width, tile, overlap) * side(height, tile, overlap);
            let tiles = count(width, tile, overlap) * count(height, tile, overlap);
            tiles.div_ceil(workers) * pixels
        })
        .unwrap_or(max)
}

/// Window start positions along one axis of length `len`.
fn starts(len: usize, tile: usize, overlap: usize) -> Vec<usize> {
    if len <= tile {
        return vec![0];
    }
    let n = count(len, tile, overlap);
    // Spread the windows evenly so that every overlap is at least `overlap`.
    (0..n)
        .map(|i| (i * (len - tile) + (n - 1) / 2) / (n - 1))
        .collect()
}

/// Blending weight of each position of a window `[start, start + size)` on an axis of length `len`.
fn axis_weights(start: usize, size: usize, len: usize, overlap: usize) -> Vec<f32> {
    let discard = overlap / 4;
    let ramp = (overlap / 2).max(1);
    let weight = |distance: usize| {
        if distance < discard {
            0.0
        } else {
            (((distance - discard) + 1) as f32 / ramp as f32).min(1.0)
        }
    };
    (0..size)
        .map(|p| {
            let mut w = 1.0f32;
            if start > 0 {
                w = w.min(weight(p));
            }
            if start + size < len {
                w = w.min(weight(size - 1 - p));
            }
            w
        })
        .collect()
}

/// The tiles covering a `width` x `height` image.
#[derive(Clone, Debug)]
pub struct TilePlan {
    /// The image's width.
    pub width: usize,
    /// The image's height.
    pub height: usize,
    /// Pixels shared by neighbouring tiles, blended with linear ramps.
    pub overlap: usize,
    /// The tiles, row by row.
    pub tiles: Vec<Tile>,
}

impl TilePlan {
    /// Windows of at most `tile` x `tile` pixels overlapping by at least `overlap`: as many as
    /// `tile` needs along each axis, each as small as covering the image with that overlap
    /// allows ([`side`]; the tiles of a plan are all one size). `tile` is raised to `2 *
    /// overlap` where smaller, so that tiles always advance.
    pub fn new(width: usize, height: usize, tile: usize, overlap: usize) -> Self {
        let tile = tile.max(2 * overlap).max(1);
        let [tile_w, tile_h] = [side(width, tile, overlap), side(height, tile, overlap)];
        let xs = starts(width, tile_w, overlap);
        let ys = starts(height, tile_h, overlap);
        let tiles = ys
            .iter()
            .flat_map(|&y| {
                xs.iter().map(move |&x| Tile {
                    x,
                    y,
                    width: tile_w,
                    height: tile_h,
                })
            })
            .collect();
        Self {
            width,
            height,
            overlap,
            tiles,
        }
    }

    /// Cut a tile out of a planar `[C, H, W]` image.
    pub fn crop(&self, planar: &[f32], tile: &Tile) -> Vec<f32> {
        let channels = planar.len() / (self.width * self.height);
        let mut out = Vec::with_capacity(channels * tile.width * tile.height);
        for c in 0..channels {
            for y in tile.y..tile.y + tile.height {
                let row = c * self.width * self.height + y * self.width;
                out.extend_from_slice(&planar[row + tile.x..row + tile.x + tile.width]);
            }
        }
        out
    }

    /// An empty accumulator for this plan's tile outputs.
    pub fn blend(&self) -> Blend {
        Blend {
            width: self.width,
            height: self.height,
            overlap: self.overlap,
            sums: Vec::new(),
            weights: vec![0f32; self.width * self.height],
        }
    }

    /// Run `f` on every tile of a planar `[C, H, W]` image and blend its outputs.
    ///
    /// `f` gets a tile's planar pixels and size and returns planar maps of that size (any
    /// number of maps, each with any channel count, the same for every tile). `progress` is
    /// called after each tile with (done, total) and stops the work by returning false.
    pub fn run<F, P>(
        &self,
        planar: &[f32],
        mut f: F,
        mut progress: P,
    ) -> Result<Vec<Vec<f32>>, ModelError>
    where
        F: FnMut(Vec<f32>, &Tile) -> Result<Vec<Vec<f32>>, ModelError>,
        P: FnMut(usize, usize) -> bool,
    {
        ready_now(self.run_async(
            planar,
            1,
            |pixels, tile| core::future::ready(f(pixels, tile)),
            |done, total| core::future::ready(progress(done, total)),
        ))
    }

    /// [`TilePlan::run`] for work that finishes asynchronously (reading results back from
    /// WebGPU, or tiles sent to other Web Workers): up to `concurrency` tiles are in `f` at
    /// once, and their maps are blended in plan order whatever order they finish in, so the
    /// result does not depend on `concurrency` bit for bit. `progress`'s answer is awaited,
    /// which also lets the caller's event loop run between tiles. The one tile loop of all.
    pub async fn run_async<F, FF, P, PF>(
        &self,
        planar: &[f32],
        concurrency: usize,
        mut f: F,
        mut progress: P,
    ) -> Result<Vec<Vec<f32>>, ModelError>
    where
        F: FnMut(Vec<f32>, &Tile) -> FF,
        FF: core::future::Future<Output = Result<Vec<Vec<f32>>, ModelError>>,
        P: FnMut(usize, usize) -> PF,
        PF: core::future::Future<Output = bool>,
    {
        use futures_util::stream::{self, StreamExt};

        let mut blend = self.blend();
        let mut outputs = stream::iter(&self.tiles)
            .map(|tile| f(self.crop(planar, tile), tile))
            .buffered(concurrency.max(1));
        let mut tiles = self.tiles.iter().enumerate();
        while let Some(maps) = outputs.next().await {
            let (done, tile) = tiles.next().expect("one output per tile");
            blend.add(tile, &maps?);
            if !progress(done + 1, self.tiles.len()).await {
                return Err(ModelError::Cancelled);
            }
        }
        Ok(blend.finish())
    }
}

/// The output of a future whose every await is ready at once (the synchronous path of
/// [`TilePlan::run`]). A combinator may still yield to be fair to others (it wakes itself
/// first), so it is polled until ready; nothing it waits on is ever pending.
pub(crate) fn ready_now<T>(future: impl core::future::Future<Output = T>) -> T {
    let mut future = core::pin::pin!(future);
    let mut context = core::task::Context::from_waker(core::task::Waker::noop());
    loop {
        if let core::task::Poll::Ready(value) = future.as_mut().poll(&mut context) {
            return value;
        }
    }
}

/// Weighted sums of tile outputs; [`Blend::finish`] normalises them into whole-image maps.
#[derive(Clone, Debug)]
pub struct Blend {
    width: usize,
    height: usize,
    overlap: usize,
    sums: Vec<Vec<f32>>,
    weights: Vec<f32>,
}

impl Blend {
    /// Add one tile's planar output maps (the same number and channel counts for every tile).
    pub fn add(&mut self, tile: &Tile, maps: &[Vec<f32>]) {
        let (w, h) = (self.width, self.height);
        let tile_area = tile.width * tile.height;
        if self.sums.is_empty() {
            self.sums = maps
                .iter()
                .map(|m| vec![0f32; m.len() / tile_area * w * h])
                .collect();
        }
        let wx = axis_weights(tile.x, tile.width, w, self.overlap);
        let wy = axis_weights(tile.y, tile.height, h, self.overlap);
        for (ty, &weight_y) in wy.iter().enumerate() {
            for (tx, &weight_x) in wx.iter().enumerate() {
                self.weights[(tile.y + ty) * w + tile.x + tx] += weight_y * weight_x;
            }
        }
        for (sum, map) in self.sums.iter_mut().zip(maps) {
            for c in 0..map.len() / tile_area {
                for (ty, &weight_y) in wy.iter().enumerate() {
                    let src = &map[c * tile_area + ty * tile.width..][..tile.width];
                    let dst = &mut sum[c * w * h + (tile.y + ty) * w + tile.x..][..tile.width];
                    for ((d, s), &weight_x) in dst.iter_mut().zip(src).zip(&wx) {
                        *d += s * weight_x * weight_y;
                    }
                }
            }
        }
    }

    /// The blended maps, once every tile has been added.
    pub fn finish(mut self) -> Vec<Vec<f32>> {
        let area = self.width * self.height;
        for sum in &mut self.sums {
            for (i, v) in sum.iter_mut().enumerate() {
                *v /= self.weights[i % area];
            }
        }
        self.sums
    }
}

/// A future that is pending `polls` times (waking itself each time) before it gives `value`:
/// tiles that finish late, for the tests of concurrent tile loops.
#[cfg(test)]
pub(crate) async fn late<T>(value: T, polls: usize) -> T {
    let mut left = polls;
    core::future::poll_fn(|context| {
        if left == 0 {
            return core::task::Poll::Ready(());
        }
        left -= 1;
        context.waker().wake_by_ref();
        core::task::Poll::Pending
    })
    .await;
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `balanced_tile` against the schedule itself, plan by plan ([`TilePlan::new`]'s tiles,
    /// each worker taking the next): no other side in the range finishes sooner (the last
    /// worker's pixels), and among those that tie none is larger. Then what that means here:
    /// a 512x512 photo is one tile on one worker and nine on three (three rounds, none idle);
    /// a 12 MP photo on three workers leaves under 5 % of the worker-rounds idle and computes
    /// under 1.35x its pixels; an image within the smallest side stays whole.
    #[test]
    fn balanced_tiles_finish_soonest() {
        let finish = |w: usize, h: usize, tile: usize, workers: usize| {
            let plan = TilePlan::new(w, h, tile, overlap_for(tile));
            let mut busy = vec![0usize; workers];
            for t in &plan.tiles {
                let next = (0..workers).min_by_key(|&i| busy[i]).unwrap();
                busy[next] += t.width * t.height;
            }
            (*busy.iter().max().unwrap(), plan)
        };
        for (w, h) in [
            (512, 512),
            (481, 321),
            (4000, 3000),
            (1920, 1080),
            (300, 2000),
            (200, 150),
        ] {
            for workers in [1, 2, 3, 4, 7, 16] {
                let chosen = balanced_tile(w, h, workers, [256, 512]);
                assert!((256..=512).contains(&chosen) && chosen.is_multiple_of(8));
                let (best, _) = finish(w, h, chosen, workers);
                for tile in (256..=512).step_by(8) {
                    let (other, _) = finish(w, h, tile, workers);
                    assert!(
                        best <= other,
                        "{w}x{h} on {workers}: {chosen} takes {best}, {tile} {other}"
                    );
                    assert!(
                        best < other || tile <= chosen,
                        "{w}x{h} on {workers}: {tile} ties {chosen}"
                    );
                }
            }
        }
        let (_, plan) = finish(512, 512, balanced_tile(512, 512, 1, [256, 512]), 1);
        assert_eq!(plan.tiles.len(), 1);
        let (_, plan) = finish(512, 512, balanced_tile(512, 512, 3, [256, 512]), 3);
        assert_eq!(plan.tiles.len(), 9);
        let (_, plan) = finish(4000, 3000, balanced_tile(4000, 3000, 3, [256, 512]), 3);
        let rounds = plan.tiles.len().div_ceil(3);
        assert!((rounds * 3 - plan.tiles.len()) as f64 / ((rounds * 3) as f64) < 0.05);
        let computed: usize = plan.tiles.iter().map(|t| t.width * t.height).sum();
        assert!(
            (computed as f64) < 1.35 * 12e6,
            "{computed} pixels for 12 MP"
        );
        assert_eq!(
            TilePlan::new(200, 150, balanced_tile(200, 150, 16, [256, 512]), 64)
                .tiles
                .len(),
            1
        );
    }

    #[test]
    fn tiles_cover_every_pixel_with_positive_weight() {
        for (w, h, tile, overlap) in [
            (1, 1, 512, 64),
            (97, 61, 40, 16),
            (1000, 333, 256, 64),
            (300, 300, 128, 64),
        ] {
            let plan = TilePlan::new(w, h, tile, overlap);
            let mut weight = vec![0f32; w * h];
            for t in &plan.tiles {
                assert!(t.x + t.width <= w && t.y + t.height <= h);
                let wx = axis_weights(t.x, t.width, w, overlap);
                let wy = axis_weights(t.y, t.height, h, overlap);
                for y in 0..t.height {
                    for x in 0..t.width {
                        weight[(t.y + y) * w + t.x + x] += wx[x] * wy[y];
                    }
                }
            }
            assert!(weight.iter().all(|&v| v > 0.0), "{w}x{h} tile {tile}");
        }
    }

    /// Each axis takes as many windows as sides of `tile` would (the count by its definition:
    /// the fewest windows of `tile` with `overlap` that reach the end), no side is larger than
    /// `tile`, neighbours overlap by at least `overlap`, and the windows are the smallest that
    /// do: one pixel less per side would need another window.
    #[test]
    fn tiles_are_as_few_and_as_small_as_cover_the_image() {
        let count = |len: usize, side: usize, overlap: usize| {
            // Windows placed at stride `side - overlap` until one reaches the end.
            let mut n = 1;
            while side + (n - 1) * (side - overlap) < len {
                n += 1;
            }
            n
        };
        for (w, h, tile, overlap) in [
            (512, 512, 256, 64),
            (481, 321, 256, 64),
            (4000, 3000, 256, 64),
            (1000, 333, 512, 64),
            (97, 61, 40, 16),
            (257, 256, 256, 64),
            (100, 100, 256, 64),
        ] {
            let plan = TilePlan::new(w, h, tile, overlap);
            for (len, size, along) in [
                (
                    w,
                    plan.tiles[0].width,
                    plan.tiles.iter().map(|t| t.x).collect::<Vec<_>>(),
                ),
                (
                    h,
                    plan.tiles[0].height,
                    plan.tiles.iter().map(|t| t.y).collect(),
                ),
            ] {
                let mut starts = along.clone();
                starts.sort_unstable();
                starts.dedup();
                assert!(
                    size <= tile.max(2 * overlap) && size <= len,
                    "{w}x{h}: {size}"
                );
                assert_eq!(starts.len(), count(len, tile.min(len), overlap), "{w}x{h}");
                assert_eq!(
                    *starts.last().unwrap() + size,
                    len,
                    "{w}x{h}: the last reaches the end"
                );
                for pair in starts.windows(2) {
                    assert!(
                        pair[0] + size >= pair[1] + overlap,
                        "{w}x{h}: {pair:?} {size}"
                    );
                }
                if size < len {
                    assert!(
                        count(len, size - 1, overlap) > starts.len(),
                        "{w}x{h}: {size}"
                    );
                }
            }
        }
        // The page's 512x512 at its CPU tile (256): 9 tiles of 214, not 9 of 256.
        let plan = TilePlan::new(512, 512, 256, 64);
        assert_eq!((plan.tiles.len(), plan.tiles[0].width), (9, 214));
    }

    #[test]
    fn a_pointwise_function_is_reproduced_exactly() {
        let (w, h) = (97, 61);
        let image: Vec<f32> = (0..3 * w * h).map(|i| (i % 251) as f32 / 251.0).collect();
        let plan = TilePlan::new(w, h, 40, 16);
        assert!(plan.tiles.len() > 4);
        let mut calls = 0;
        let out = plan
            .run(
                &image,
                |t, _| Ok(vec![t.iter().map(|v| v * 2.0).collect()]),
                |_, _| {
                    calls += 1;
                    true
                },
            )
            .unwrap();
        assert_eq!(calls, plan.tiles.len());
        for (a, b) in out[0].iter().zip(&image) {
            assert!((a - 2.0 * b).abs() < 1e-5);
        }
    }

    /// Tiles in flight at once that finish in reverse order blend to the same bits as one at a
    /// time (the reference: the synchronous loop), and progress still counts them in order.
    #[test]
    fn concurrent_tiles_blend_as_one_at_a_time() {
        let (w, h) = (150, 110);
        let image: Vec<f32> = (0..3 * w * h).map(|i| (i % 97) as f32 / 97.0).collect();
        let plan = TilePlan::new(w, h, 48, 16);
        assert!(plan.tiles.len() >= 9);
        // Each tile's output depends on where it is, so every overlap sums distinct values.
        let f = |pixels: Vec<f32>, tile: &Tile| {
            let k = 1.0 + (tile.x * 7 + tile.y * 3) as f32 * 1e-3;
            vec![pixels.iter().map(|v| v * k).collect::<Vec<f32>>()]
        };
        let one = plan.run(&image, |p, t| Ok(f(p, t)), |_, _| true).unwrap();
        for concurrency in [2, 3, 16] {
            let mut seen = Vec::new();
            let mut index = 0;
            let many = ready_now(plan.run_async(
                &image,
                concurrency,
                |p, t| {
                    index += 1;
                    // Later tiles are ready sooner: they finish out of order.
                    late(Ok(f(p, t)), 3 * (plan.tiles.len() - index))
                },
                |done, _| {
                    seen.push(done);
                    core::future::ready(true)
                },
            ))
            .unwrap();
            assert_eq!(seen, (1..=plan.tiles.len()).collect::<Vec<_>>());
            assert!(
                one[0]
                    .iter()
                    .zip(&many[0])
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "concurrency {concurrency} changed the blend"
            );
        }
    }

    #[test]
    fn progress_can_cancel() {
        let plan = TilePlan::new(100, 100, 40, 16);
        let image = vec![0f32; 3 * 100 * 100];
        let err = plan
            .run(&image, |t, _| Ok(vec![t]), |done, _| done < 2)
            .unwrap_err();
        assert!(matches!(err, ModelError::Cancelled));
    }

    #[test]
    fn tiles_fit_the_limits() {
        // Spec defaults: 128 MiB per binding, 256 MiB per buffer.
        let tile = tile_for_gpu_limits(128 << 20, 256 << 20);
        assert_eq!(tile % 8, 0);
        assert!((tile * tile) as u64 * GPU_BYTES_PER_PIXEL <= 128 << 20);
        assert!(tile >= 256, "default limits allow {tile}");
        // A huge GPU is capped, a tiny one still makes progress.
        assert_eq!(
            tile_for_gpu_limits(u64::MAX / 2, u64::MAX / 2),
            MAX_GPU_TILE
        );
        assert_eq!(tile_for_gpu_limits(1 << 20, 1 << 20), MIN_GPU_TILE);
        assert_eq!(overlap_for(tile), 64);
        assert_eq!(overlap_for(MIN_GPU_TILE), 32);
        // The smaller of the two limits rules.
        assert_eq!(
            tile_for_gpu_limits(1 << 30, 64 << 20),
            tile_for_gpu_limits(64 << 20, 1 << 30)
        );
    }
}
