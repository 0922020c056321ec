//! JSON byte-compatible with Python's `json.dumps(obj, sort_keys=True)` followed by `"\n"` (D4,
//! github-rgw-rbd.md §1.6), so that a backup taken over from the original keeps its unchanged
//! files byte-identical (no copy-on-write storm in the snapshots).
//!
//! The format, as CPython's `json` module writes it with those arguments:
//! - separators `", "` and `": "`, no indentation, no whitespace elsewhere;
//! - object keys sorted at every level by code point (Python compares `str` by code point, which
//!   is the byte order of UTF-8, so sorting Rust `str`s gives the same order, astral keys
//!   included);
//! - strings with `ensure_ascii`: printable ASCII (`' '..='~'`) as is except `"` and `\`;
//!   `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`; every other character as `\uXXXX` with lowercase
//!   hex, and characters beyond the BMP as a UTF-16 surrogate pair (DEL, 0x7f, is escaped too);
//! - integers in decimal; floats as Python's `repr(float)`: the shortest digits that round-trip,
//!   positional notation when the decimal exponent is in `-4..16` (`0.0001`, `1e-05`,
//!   `1000000000000000.0`, `1e+16`), always with a `.0` or an exponent;
//! - `true`, `false`, `null`.
//!
//! Known limits: a JSON integer beyond the 64-bit range reaches us as a float (serde_json without
//! `arbitrary_precision`), where Python keeps it exact; NaN and infinities cannot occur in a
//! `serde_json::Value`. Neither appears in GitHub's JSON.

use serde::Serialize;
use serde_json::{Number, Value};

/// `json.dumps(value, sort_keys=True)`: the text without the trailing newline.
pub fn dumps(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// The bytes of a JSON file as the original wrote it: [`dumps`] followed by `"\n"`.
pub fn file_bytes(value: &Value) -> Vec<u8> {
    let mut out = dumps(value);
    out.push('\n');
    out.into_bytes()
}

/// [`file_bytes`] of any serialisable value (converted to a `serde_json::Value` first, so that
/// struct fields are sorted like the keys of a Python dict).
pub fn to_file_bytes<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    Ok(file_bytes(&serde_json::to_value(value)?))
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // Byte order of UTF-8 is code point order: Python's order for str keys.
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, key);
                out.push_str(": ");
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64() {
        out.push_str(&float_repr(f));
    } else {
        // Unreachable without `arbitrary_precision`; keep serde_json's own text.
        out.push_str(&n.to_string());
    }
}

/// Python's `repr(float)` for a finite `f` (CPython `format_float_short`, mode `'r'`).
fn float_repr(f: f64) -> String {
    if !f.is_finite() {
        // Python's json writes these spellings (allow_nan); a Value cannot hold them.
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0.0");
    }
    // Rust's `{:e}` gives the shortest round-tripping digits (closest on ties), as does
    // Python's dtoa mode 0: `d.ddde±x`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exponent) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // Python's decpt: the value is 0.DIGITS × 10^decpt.
    let decpt = exponent + 1;
    let n = digits.len() as i32;
    let body = if decpt <= -4 || decpt > 16 {
        let mut s = digits[..1].to_string();
        if n > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        let esign = if e < 0 { '-' } else { '+' };
        format!("{s}e{esign}{:02}", e.abs())
    } else if decpt <= 0 {
        format!("0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= n {
        format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
    } else {
        let (int, frac) = digits.split_at(decpt as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{body}")
}

fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let push_u = |out: &mut String, unit: u16| {
        out.push_str("\\u");
        for shift in [12, 8, 4, 0] {
            out.push(HEX[usize::from((unit >> shift) & 0xf)] as char);
        }
    };
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_u(out, *unit);
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Expected strings below were produced by CPython 3.11:
    /// `python3 -c 'import json; print(json.dumps(OBJ, sort_keys=True))'`.
    #[test]
    fn nested_objects_sort_keys_at_every_level() {
        let v = json!({"b": [1, {"z": null, "a": true}], "a": {"y": false, "x": "s"}, "": []});
        assert_eq!(
            dumps(&v),
            r#"{"": [], "a": {"x": "s", "y": false}, "b": [1, {"a": true, "z": null}]}"#
        );
        assert_eq!(dumps(&json!({})), "{}");
        assert_eq!(dumps(&json!([])), "[]");
    }

    #[test]
    fn strings_escape_like_ensure_ascii() {
        // json.dumps('"\\/\n\r\t\b\f\x00\x1f\x7f é€😀~ ')
        let s = "\"\\/\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f} é€😀~ ";
        assert_eq!(
            dumps(&json!(s)),
            r#""\"\\/\n\r\t\b\f\u0000\u001f\u007f \u00e9\u20ac\ud83d\ude00~ ""#
        );
        // U+FFFF and U+10FFFF, the edges of the BMP and of Unicode.
        assert_eq!(
            dumps(&json!("\u{ffff}\u{10000}\u{10ffff}")),
            r#""\uffff\ud800\udc00\udbff\udfff""#
        );
    }

    #[test]
    fn keys_sort_by_code_point_even_beyond_the_bmp() {
        // UTF-16 order would put U+1F600 (D83D...) before U+FF5E; Python's code point order
        // puts it after. print(json.dumps({"\uff5e":1,"\U0001f600":2,"z":3,"Z":4,"é":5},
        // sort_keys=True))
        let v = json!({"\u{ff5e}": 1, "\u{1f600}": 2, "z": 3, "Z": 4, "é": 5});
        assert_eq!(
            dumps(&v),
            r#"{"Z": 4, "z": 3, "\u00e9": 5, "\uff5e": 1, "\ud83d\ude00": 2}"#
        );
    }

    #[test]
    fn numbers_print_like_python() {
        let cases: &[(Value, &str)] = &[
            (json!(0), "0"),
            (json!(-17), "-17"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(i64::MIN), "-9223372036854775808"),
            (json!(1.0), "1.0"),
            (json!(-0.0), "-0.0"),
            (json!(0.1), "0.1"),
            (json!(1e-5), "1e-05"),
            (json!(0.0001), "0.0001"),
            (json!(0.00012345), "0.00012345"),
            (json!(1.2345e-5), "1.2345e-05"),
            (json!(1e16), "1e+16"),
            (json!(1e15), "1000000000000000.0"),
            (json!(1.5e16), "1.5e+16"),
            (json!(123456789012345.6), "123456789012345.6"),
            (json!(1.7976931348623157e308), "1.7976931348623157e+308"),
            (json!(5e-324), "5e-324"),
            (json!(2.5), "2.5"),
            (json!(-1e100), "-1e+100"),
        ];
        for (value, expected) in cases {
            assert_eq!(dumps(value), *expected, "{value:?}");
        }
    }

    #[test]
    fn files_end_with_a_newline_and_structs_are_sorted() {
        #[derive(Serialize)]
        struct Milestone {
            title: &'static str,
            state: &'static str,
            due_on: Option<&'static str>,
        }
        let m = Milestone {
            title: "v1",
            state: "closed",
            due_on: None,
        };
        assert_eq!(
            to_file_bytes(&m).unwrap(),
            b"{\"due_on\": null, \"state\": \"closed\", \"title\": \"v1\"}\n"
        );
    }
}
