//! Structural limits checked before a component is compiled.
//!
//! Compilation time and memory grow with the number of functions and the
//! amount of code: a 2.1 MB component of 300 000 empty functions took 22.9 s
//! and 1.8 GiB to compile, so the 64 MiB size cap alone would allow tens of GB.
//! Reading the structure with `wasmparser` (the parser wasmtime itself uses)
//! costs milliseconds and no compilation: functions, code bytes, locals and
//! types are counted across every core module nested in the component, and a
//! component past a limit is refused with `INVALID_COMPONENT` naming it.
//!
//! The defaults sit well above the largest real components (the JavaScript and
//! Python runtimes; see `the_built_guests_are_far_within_the_limits` in
//! `tests/e2e/tests/loading.rs`) and far below what hurts the host.

use wasmparser::{Parser, Payload};

use crate::error::{Error, ErrorCode, Result};

/// Structural limits on a component, checked before it is compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileLimits {
    /// Functions defined by all its core modules together. Default 200 000.
    pub max_functions: u64,
    /// Bytes of function bodies (code sections) together. Default 48 MiB.
    pub max_code_bytes: u64,
    /// Locals of one function. Default 50 000 (wasmparser's own limit).
    pub max_locals_per_function: u64,
    /// Types (core and component) together. Default 100 000.
    pub max_types: u64,
}

impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits {
            max_functions: 200_000,
            max_code_bytes: 48 * 1024 * 1024,
            max_locals_per_function: 50_000,
            max_types: 100_000,
        }
    }
}

/// What a component holds, as counted by [`measure`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Structure {
    /// Functions defined (code-section entries).
    pub functions: u64,
    /// Bytes of function bodies.
    pub code_bytes: u64,
    /// Most locals of any one function.
    pub max_locals: u64,
    /// Core and component types.
    pub types: u64,
}

/// Count what `bytes` holds; stops early once `limits` are passed (the
/// error says which). Malformed input is `INVALID_COMPONENT` too.
pub fn check(bytes: &[u8], limits: &CompileLimits) -> Result<Structure> {
    let mut s = Structure::default();
    let malformed = |e: wasmparser::BinaryReaderError| {
        Error::new(
            ErrorCode::InvalidComponent,
            format!("malformed component: {e}"),
        )
    };
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::TypeSection(r) => s.types += u64::from(r.count()),
            Payload::CoreTypeSection(r) => s.types += u64::from(r.count()),
            Payload::ComponentTypeSection(r) => s.types += u64::from(r.count()),
            Payload::CodeSectionStart { count, size, .. } => {
                s.functions += u64::from(count);
                s.code_bytes += u64::from(size);
                over(
                    s.functions,
                    limits.max_functions,
                    "functions",
                    "max_functions",
                )?;
                over(
                    s.code_bytes,
                    limits.max_code_bytes,
                    "bytes of code",
                    "max_code_bytes",
                )?;
            }
            Payload::CodeSectionEntry(body) => {
                let mut locals = 0u64;
                for entry in body.get_locals_reader().map_err(malformed)? {
                    let (n, _) = entry.map_err(malformed)?;
                    locals += u64::from(n);
                    // Checked as it grows: one entry can declare 2^32 locals.
                    over(
                        locals,
                        limits.max_locals_per_function,
                        "locals in one function",
                        "max_locals_per_function",
                    )?;
                }
                s.max_locals = s.max_locals.max(locals);
            }
            _ => {}
        }
        over(s.types, limits.max_types, "types", "max_types")?;
    }
    Ok(s)
}

fn over(n: u64, max: u64, what: &str, limit: &str) -> Result<()> {
    if n > max {
        return Err(Error::new(
            ErrorCode::InvalidComponent,
            format!(
                "component has more than {max} {what} (it has at least {n}); the limit is \
                 {max} ({limit}), checked before compiling"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core module of `n` empty functions, hand-encoded (sections: type, function, code).
    fn module(functions: u32, locals: u32) -> Vec<u8> {
        fn leb(mut v: u32, out: &mut Vec<u8>) {
            loop {
                let b = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    out.push(b);
                    return;
                }
                out.push(b | 0x80);
            }
        }
        fn section(id: u8, body: Vec<u8>, out: &mut Vec<u8>) {
            out.push(id);
            leb(body.len() as u32, out);
            out.extend(body);
        }
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        section(1, vec![1, 0x60, 0, 0], &mut m); // one type: [] -> []
        let mut funcs = Vec::new();
        leb(functions, &mut funcs);
        funcs.extend(std::iter::repeat_n(0u8, functions as usize));
        section(3, funcs, &mut m);
        let mut body = Vec::new();
        if locals > 0 {
            body.push(1);
            leb(locals, &mut body);
            body.push(0x7f); // i32
        } else {
            body.push(0);
        }
        body.push(0x0b); // end
        let mut code = Vec::new();
        leb(functions, &mut code);
        for _ in 0..functions {
            leb(body.len() as u32, &mut code);
            code.extend(&body);
        }
        section(10, code, &mut m);
        m
    }

    #[test]
    fn structure_is_counted_and_each_limit_named() {
        let s = check(&module(10, 3), &CompileLimits::default()).unwrap();
        assert_eq!((s.functions, s.max_locals, s.types), (10, 3, 1));
        let tight = CompileLimits {
            max_functions: 5,
            ..CompileLimits::default()
        };
        let e = check(&module(10, 0), &tight).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidComponent);
        assert!(e.message.contains("(max_functions)"), "{e}");
        let e = check(&module(1, 60_000), &CompileLimits::default()).unwrap_err();
        assert!(e.message.contains("(max_locals_per_function)"), "{e}");
        let tiny_code = CompileLimits {
            max_code_bytes: 8,
            ..CompileLimits::default()
        };
        assert!(check(&module(10, 0), &tiny_code)
            .unwrap_err()
            .message
            .contains("(max_code_bytes)"));
        assert!(check(b"\0asm\x01\0\0\0\x01\xff", &CompileLimits::default())
            .unwrap_err()
            .message
            .contains("malformed"));
    }
}
