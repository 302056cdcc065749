//! Costs of the machine that shape the node's design, measured on the machine at hand:
//!
//! - handing a request's CPU work off the async runtime: a `spawn_blocking` round trip (a parked
//!   pool thread is woken, then the parked worker is woken back) vs `block_in_place` (the work
//!   runs on the calling worker; its queue moves to another thread). Each search is preceded
//!   by 1 ms of idleness, as a node's searches are between requests;
//! - creating a zstd codec, which parquet does for every column chunk it reads (a compression
//!   and a decompression context; each reads the CPU's features with `cpuid`, a VM exit on a
//!   virtual machine) vs decoding a 16 KiB page with a context kept.
//!
//! ```text
//! cargo bench --bench machine_costs
//! ```

use std::time::{Duration, Instant};

fn percentile_us(samples: &mut [Duration], quantile: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 * quantile) as usize).min(samples.len() - 1);
    samples[index].as_secs_f64() * 1e6
}

/// A little arithmetic (0.3 µs here), standing in for a search.
fn work() -> u64 {
    let mut x = 0u64;
    for i in 0..2000 {
        x = x.wrapping_mul(31).wrapping_add(i);
    }
    std::hint::black_box(x)
}

fn print_row(name: &str, samples: &mut [Duration]) {
    println!(
        "| {name} | {:.1} | {:.1} |",
        percentile_us(samples, 0.5),
        percentile_us(samples, 0.99)
    );
}

fn hand_off_costs(rounds: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut pool, mut in_place, mut inline) = runtime.block_on(async move {
        // Measured from a spawned task, as a gRPC handler runs.
        tokio::spawn(async move {
            let mut pool = Vec::with_capacity(rounds);
            let mut in_place = Vec::with_capacity(rounds);
            let mut inline = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let started = Instant::now();
                tokio::task::spawn_blocking(work).await.unwrap();
                pool.push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(1)).await;
                let started = Instant::now();
                tokio::task::block_in_place(work);
                in_place.push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(1)).await;
                let started = Instant::now();
                work();
                inline.push(started.elapsed());
            }
            (pool, in_place, inline)
        })
        .await
        .unwrap()
    });
    println!("| {rounds} rounds, after 1 ms idle each | p50 µs | p99 µs |");
    println!("|---|---|---|");
    print_row("the work alone, on the worker", &mut inline);
    print_row("`block_in_place` (the node)", &mut in_place);
    print_row("`spawn_blocking` round trip", &mut pool);
}

fn codec_costs(rounds: usize) {
    let page: Vec<u8> = (0..16 * 1024u32)
        .map(|n| b"tierdex cold page text "[(n % 23) as usize])
        .collect();
    let mut contexts = Vec::with_capacity(rounds);
    let mut zstd_decode = Vec::with_capacity(rounds);
    let compressed = zstd::bulk::compress(&page, 3).unwrap();
    let mut decompressor = zstd::bulk::Decompressor::new().unwrap();
    for _ in 0..rounds {
        let started = Instant::now();
        let compressor = zstd::bulk::Compressor::new(3).unwrap();
        let fresh = zstd::bulk::Decompressor::new().unwrap();
        contexts.push(started.elapsed());
        std::hint::black_box((compressor, fresh));
        let started = Instant::now();
        let decoded = decompressor.decompress(&compressed, page.len()).unwrap();
        zstd_decode.push(started.elapsed());
        std::hint::black_box(decoded);
    }
    println!();
    println!("| {rounds} rounds | p50 µs | p99 µs |");
    println!("|---|---|---|");
    print_row(
        "zstd codec as parquet creates it per column chunk (compression + decompression context)",
        &mut contexts,
    );
    print_row(
        "zstd decode of a 16 KiB page, context reused",
        &mut zstd_decode,
    );
}

fn main() {
    hand_off_costs(2000);
    codec_costs(2000);
}
