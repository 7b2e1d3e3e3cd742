//! Seal and open throughput of 1 KiB secret values with a tenant data key, and data-key
//! wrap/unwrap under a master key. `cargo bench -p trellis-core --bench secrets`
//! (release profile); `just bench` runs it and keeps its JSON line. Prints one JSON
//! object: operations per second, the median of five one-second rounds each.

#![expect(clippy::print_stdout, reason = "benchmark output")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use trellis_core::crypto::{DataKey, MasterKey, MasterKeyring, SecretBinding};
use uuid::Uuid;

const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_secs(1);

/// Runs `op` repeatedly for one round; returns operations per second.
fn ops_per_second(mut op: impl FnMut()) -> f64 {
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < ROUND {
        for _ in 0..64 {
            op();
        }
        count += 64;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn median(mut op: impl FnMut() -> f64) -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS).map(|_| op()).collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn main() {
    let key = DataKey::generate().expect("data key");
    let binding = SecretBinding {
        tenant_id: Uuid::now_v7(),
        secret_id: Uuid::now_v7(),
        version: 1,
    };
    let value = SecretString::from("x".repeat(1024));
    let sealed = key.seal(&binding, &value).expect("seal");
    let seal = median(|| ops_per_second(|| drop(black_box(key.seal(&binding, &value)))));
    let open = median(|| ops_per_second(|| drop(black_box(key.open(&binding, &sealed)))));
    let keyring = MasterKeyring::from_keys(vec![MasterKey::generate("bench").expect("master key")])
        .expect("keyring");
    let tenant = Uuid::now_v7();
    let wrapped = keyring.wrap(tenant, &key).expect("wrap");
    let unwrap = median(|| ops_per_second(|| drop(black_box(keyring.unwrap(tenant, &wrapped)))));
    println!(
        "{{\"value_bytes\":1024,\"seal_ops_per_s\":{seal:.0},\"open_ops_per_s\":{open:.0},\"unwrap_data_key_ops_per_s\":{unwrap:.0},\"rounds\":{ROUNDS},\"round_seconds\":{}}}",
        ROUND.as_secs()
    );
}
