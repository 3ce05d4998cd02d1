//! The one switch between every core (rayon, with the `parallel` feature) and one thread (the
//! page's single-threaded wasm) for the CPU kernels' loops over independent pieces of work.
//!
//! Contract: the pieces must not depend on each other or on their order; results that are
//! collected ([`map_indices`]) keep the pieces' order, so sums over them can be taken in a
//! fixed order by the caller.

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
    if len == 0 {
        return;
    }
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        values
            .par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, chunk)| f(i, chunk));
    }
    #[cfg(not(feature = "parallel"))]
    values
        .chunks_mut(len)
        .enumerate()
        .for_each(|(i, chunk)| f(i, chunk));
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
