//! What putting a response in the query's field order costs, on the runs dashboard's
//! shape (20 workflows, 10 runs each, 5 step runs each: 1,220 objects): the copy of the
//! parsed document it keeps, the pass over a response already in order (the common
//! case), and over one whose every object is out of order (the worst). For scale, the
//! parse the copy replaces. `cargo bench -p trellis-graphql --bench order`; prints one
//! JSON object of microseconds per response, the median of five rounds.

#![expect(clippy::print_stdout, reason = "benchmark output")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use async_graphql::indexmap::IndexMap;
use async_graphql::{Name, Value};
use trellis_graphql::order::reorder;

const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_secs(1);
/// Reversed responses reordered per timed batch.
const BATCH: usize = 100;

/// Microseconds per call of `op`, the median of [`ROUNDS`] rounds.
fn micros(mut op: impl FnMut()) -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            let mut count = 0u64;
            while started.elapsed() < ROUND {
                op();
                count += 1;
            }
            started.elapsed().as_secs_f64() * 1e6 / count as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

const QUERY: &str = "query RunsDash($n:Int!){ workflows(first:$n){ edges { node { key status \
    runs(first:10){ edges { node { status createdAt finishedAt stepRuns { stepKey status } } } } } } } }";

/// The dashboard's response; `reversed` writes every object's keys backwards.
fn response(reversed: bool) -> Value {
    let object = |pairs: Vec<(&str, Value)>| {
        let mut pairs = pairs;
        if reversed {
            pairs.reverse();
        }
        let mut map = IndexMap::new();
        for (key, value) in pairs {
            map.insert(Name::new(key), value);
        }
        Value::Object(map)
    };
    let text = |s: &str| Value::String(s.to_owned());
    let step = |i: usize| {
        object(vec![
            ("stepKey", text(&format!("s{i}"))),
            ("status", text("SUCCEEDED")),
        ])
    };
    let run = || {
        let node = object(vec![
            ("status", text("SUCCEEDED")),
            ("createdAt", text("2026-12-06T10:00:00Z")),
            ("finishedAt", text("2026-12-06T10:00:05Z")),
            ("stepRuns", Value::List((0..5).map(step).collect())),
        ]);
        object(vec![("node", node)])
    };
    let workflow = |i: usize| {
        let runs = object(vec![(
            "edges",
            Value::List((0..10).map(|_| run()).collect()),
        )]);
        let node = object(vec![
            ("key", text(&format!("wf{i}"))),
            ("status", text("ACTIVE")),
            ("runs", runs),
        ]);
        object(vec![("node", node)])
    };
    let workflows = object(vec![(
        "edges",
        Value::List((0..20).map(workflow).collect()),
    )]);
    object(vec![("workflows", workflows)])
}

fn main() {
    let document = async_graphql::parser::parse_query(QUERY).unwrap();
    let (_, operation) = document.operations.iter().next().unwrap();
    let root = &operation.node.selection_set.node;
    let in_order = response(false);
    let out_of_order = response(true);
    // The pass must turn the reversed response into the ordered one (compared as text:
    // maps compare equal in any order).
    let mut check = out_of_order.clone();
    reorder(&mut check, &document, root);
    assert_eq!(
        serde_json::to_string(&check).unwrap(),
        serde_json::to_string(&in_order).unwrap()
    );
    assert_ne!(
        serde_json::to_string(&out_of_order).unwrap(),
        serde_json::to_string(&in_order).unwrap()
    );
    let parse = micros(|| drop(black_box(async_graphql::parser::parse_query(QUERY))));
    let copy = micros(|| drop(black_box(document.clone())));
    // A response in order is left as it is, so one value serves every call.
    let mut value = in_order;
    let ordered = micros(|| {
        reorder(&mut value, &document, root);
        black_box(&value);
    });
    // A reversed response is rebuilt by the pass: each call gets a fresh copy, made
    // before the clock starts.
    let reordered = {
        let mut rounds: Vec<f64> = (0..ROUNDS * 3)
            .map(|_| {
                let mut copies: Vec<Value> = (0..BATCH).map(|_| out_of_order.clone()).collect();
                let started = Instant::now();
                for copy in &mut copies {
                    reorder(copy, &document, root);
                }
                let took = started.elapsed().as_secs_f64() * 1e6 / BATCH as f64;
                black_box(copies);
                took
            })
            .collect();
        rounds.sort_by(f64::total_cmp);
        rounds[rounds.len() / 2]
    };
    println!(
        "{{\"objects\":1220,\"parse_us\":{parse:.1},\"document_copy_us\":{copy:.1},\"in_order_us\":{ordered:.1},\"all_out_of_order_us\":{reordered:.1},\"rounds\":{ROUNDS}}}"
    );
}
