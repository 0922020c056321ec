//! D4: `pyjson` against CPython itself. Random JSON values (non-ASCII, astral and control
//! characters, many-key nested objects, every kind of float) are written by
//! `deltaic::sources::github::pyjson::dumps` and by `json.dumps(obj, sort_keys=True)` in one
//! python3 process for the whole batch, and must agree byte for byte.

use crate::harness::require;
use deltaic::sources::github::pyjson;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Map, Number, Value};
use std::io::Write;
use std::process::{Command, Stdio};

const CASES: usize = 3000;

/// Characters that stress the escaping rules.
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::char::range(' ', '~'),
        2 => prop::char::range('\u{0}', '\u{1f}'),
        1 => Just('\u{7f}'),
        2 => prop::char::range('\u{80}', '\u{7ff}'),
        2 => prop::char::range('\u{800}', '\u{ffff}'),
        2 => prop::char::range('\u{10000}', '\u{10ffff}'),
        1 => prop::sample::select(vec!['"', '\\', '/', '\n', '\r', '\t', '\u{8}', '\u{c}']),
    ]
}

fn any_string() -> impl Strategy<Value = String> {
    prop::collection::vec(any_char(), 0..12).prop_map(|cs| cs.into_iter().collect())
}

fn any_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        (-20i32..20, any::<i32>()).prop_map(|(e, m)| f64::from(m) * 10f64.powi(e)),
        (-330i32..308).prop_map(|e| 10f64.powi(e)),
        any::<i64>().prop_map(|i| i as f64),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any_float().prop_map(|f| Value::Number(Number::from_f64(f).expect("finite"))),
        any_string().prop_map(Value::String),
    ]
}

fn any_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 16, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any_string(), inner), 0..16)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `json.dumps(json.loads(line), sort_keys=True)` for every line, in one python3 process.
fn python_dumps(inputs: &[String]) -> Vec<String> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json, sys\n\
             for line in sys.stdin:\n    \
                 sys.stdout.write(json.dumps(json.loads(line), sort_keys=True) + '\\n')\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3");
    let mut stdin = child.stdin.take().unwrap();
    let text: String = inputs.iter().map(|l| format!("{l}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "python3 failed");
    // ensure_ascii output never holds a raw newline, so lines map one to one.
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn pyjson_matches_cpython_on_random_values() {
    if !require::service("python3", require::program_exists("python3")) {
        return;
    }
    let mut runner = TestRunner::deterministic();
    let strategy = any_value();
    let values: Vec<Value> = (0..CASES)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let inputs: Vec<String> = values
        .iter()
        .map(|v| serde_json::to_string(v).unwrap())
        .collect();
    let expected = python_dumps(&inputs);
    assert_eq!(expected.len(), values.len(), "python3 answered every line");
    let mut mismatches = 0;
    for ((value, input), want) in values.iter().zip(&inputs).zip(&expected) {
        let got = pyjson::dumps(value);
        if &got != want {
            mismatches += 1;
            if mismatches <= 3 {
                eprintln!("input:  {input}\npython: {want}\nours:   {got}\n");
            }
        }
    }
    assert_eq!(
        mismatches, 0,
        "outputs that differ from CPython's (see stderr)"
    );
    // The batch must actually exercise the hard cases.
    let all = expected.concat();
    for needle in ["\\ud8", "\\u00", "e-", "e+", "\\\"", ".0"] {
        assert!(all.contains(needle), "no case produced {needle}");
    }
}
