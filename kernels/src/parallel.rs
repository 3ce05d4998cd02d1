//! The one switch between every core (rayon, with the `parallel` feature) and one thread (the
//! page's single-threaded wasm) for the CPU kernels' loops over independent pieces of work.
//!
//! Contract: the pieces must not depend on each other or on their order; results that are
//! collected ([`map_indices`]) keep the pieces' order, so sums over them can be taken in a
//! fixed order by the caller.

use std::mem::MaybeUninit;

/// `task(i)` for every `i` in `0..count`.
pub fn for_each_index(count: usize, task: impl Fn(usize) + Sync + Send) {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        (0..count).into_par_iter().for_each(task);
    }
    #[cfg(not(feature = "parallel"))]
    (0..count).for_each(task);
}

/// `[f(0), …, f(count − 1)]`, in this order whatever order they are computed in.
pub fn map_indices<T: Send>(count: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        (0..count).into_par_iter().map(f).collect()
    }
    #[cfg(not(feature = "parallel"))]
    (0..count).map(f).collect()
}

/// `f(i, chunk i)` for the `len`-long chunks of `values` (the last one may be shorter);
/// nothing when `len` is 0.
pub fn for_each_chunk<T: Send>(
    values: &mut [T],
    len: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    // The results are `()`: the vector allocates nothing.
    map_chunks(values, len, f);
}

/// `[f(0, chunk 0), f(1, chunk 1), …]` for the `len`-long chunks of `values` (the last one may
/// be shorter), in this order whatever order they are computed in; nothing when `len` is 0.
pub fn map_chunks<T: Send, R: Send>(
    values: &mut [T],
    len: usize,
    f: impl Fn(usize, &mut [T]) -> R + Sync + Send,
) -> Vec<R> {
    if len == 0 {
        return Vec::new();
    }
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        values
            .par_chunks_mut(len)
            .enumerate()
            .map(|(i, chunk)| f(i, chunk))
            .collect()
    }
    #[cfg(not(feature = "parallel"))]
    values
        .chunks_mut(len)
        .enumerate()
        .map(|(i, chunk)| f(i, chunk))
        .collect()
}

/// `f(i, chunk i of a, chunk i of b)` for the `len`-long chunks of `a` and `b`; nothing when
/// `len` is 0.
pub fn for_each_chunk_pair<T: Send>(
    a: &mut [T],
    b: &mut [T],
    len: usize,
    f: impl Fn(usize, &mut [T], &mut [T]) + Sync + Send,
) {
    if len == 0 {
        return;
    }
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        a.par_chunks_mut(len)
            .zip(b.par_chunks_mut(len))
            .enumerate()
            .for_each(|(i, (a, b))| f(i, a, b));
    }
    #[cfg(not(feature = "parallel"))]
    a.chunks_mut(len)
        .zip(b.chunks_mut(len))
        .enumerate()
        .for_each(|(i, (a, b))| f(i, a, b));
}

/// `len` values made in `chunk`-long chunks (the last may be shorter), in parallel: `f(i, target)`
/// writes every value of chunk `i`. The output is never filled with zeros first: a pass over
/// memory less, and no serial `memset` while the other cores wait.
///
/// # Panics
/// If `chunk` is 0 and `len` is not (a caller's bug).
pub fn collect_chunks<T: Send>(
    len: usize,
    chunk: usize,
    f: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync + Send,
) -> Vec<T> {
    assert!(chunk > 0 || len == 0, "chunks of no values");
    let mut out = Vec::with_capacity(len);
    for_each_chunk(&mut out.spare_capacity_mut()[..len], chunk, f);
    // SAFETY: the chunks cover `0..len` (checked above: chunks of no values only for no values)
    // and `f` writes every value of its chunk (its contract).
    unsafe { out.set_len(len) };
    out
}

/// [`collect_chunks`] for two outputs of `len` values made together: `f(i, a, b)` writes every
/// value of chunk `i` of both.
///
/// # Panics
/// If `chunk` is 0 and `len` is not.
pub fn collect_chunk_pairs<T: Send>(
    len: usize,
    chunk: usize,
    f: impl Fn(usize, &mut [MaybeUninit<T>], &mut [MaybeUninit<T>]) + Sync + Send,
) -> (Vec<T>, Vec<T>) {
    assert!(chunk > 0 || len == 0, "chunks of no values");
    let (mut a, mut b) = (Vec::with_capacity(len), Vec::with_capacity(len));
    for_each_chunk_pair(
        &mut a.spare_capacity_mut()[..len],
        &mut b.spare_capacity_mut()[..len],
        chunk,
        f,
    );
    // SAFETY: as in `collect_chunks`, for both.
    unsafe {
        a.set_len(len);
        b.set_len(len);
    }
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value lands where its chunk's index says, for lengths that do and do not divide
    /// into chunks, and for no values (against the values computed one by one).
    #[test]
    fn collected_chunks_hold_every_value_in_place() {
        for (len, chunk) in [(0, 0), (0, 7), (12, 4), (13, 4), (5, 16)] {
            let expected: Vec<usize> = (0..len).map(|v| 3 * v + 1).collect();
            let fill = |i: usize, target: &mut [MaybeUninit<usize>]| {
                for (k, t) in target.iter_mut().enumerate() {
                    t.write(3 * (i * chunk + k) + 1);
                }
            };
            assert_eq!(collect_chunks(len, chunk, fill), expected);
            let (a, b) = collect_chunk_pairs(len, chunk, |i, a, b| {
                fill(i, a);
                fill(i, b);
                b.iter_mut().for_each(|v| {
                    // SAFETY: `fill` has just written every value.
                    v.write(unsafe { v.assume_init() } * 2);
                });
            });
            assert_eq!(a, expected);
            assert_eq!(b, expected.iter().map(|v| v * 2).collect::<Vec<_>>());
        }
    }

    /// `map_chunks` gives each chunk's result in the chunks' order and lets each chunk be
    /// written (against the chunks taken one by one).
    #[test]
    fn mapped_chunks_keep_their_order() {
        for (len, chunk) in [(0, 0), (0, 3), (12, 4), (13, 4), (5, 16)] {
            let mut values: Vec<usize> = (0..len).collect();
            let sums = map_chunks(&mut values, chunk, |i, part| {
                part.iter_mut().for_each(|v| *v += 100 * i);
                part.iter().sum::<usize>()
            });
            let expected: Vec<usize> = match chunk {
                0 => Vec::new(),
                _ => (0..len)
                    .collect::<Vec<_>>()
                    .chunks(chunk)
                    .enumerate()
                    .map(|(i, part)| part.iter().map(|v| v + 100 * i).sum())
                    .collect(),
            };
            assert_eq!(sums, expected, "{len} values in chunks of {chunk}");
            let written: usize = values.iter().sum();
            assert_eq!(written, expected.iter().sum::<usize>());
        }
    }
}
