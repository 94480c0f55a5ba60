//! Recognising a WebAssembly workload: binary magic and version, or WAT text.

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A core module (WASI preview 1 command: exports `_start`), binary or text.
    Module,
    /// A component (WASI preview 2 command: exports `wasi:cli/run`), binary or text.
    Component,
}

/// Skips white space and WAT comments (`;; ...` lines and `(; ... ;)` blocks) at the start of `text`.
fn skip_trivia(mut text: &str) -> &str {
    loop {
        let trimmed = text.trim_start();
        if let Some(rest) = trimmed.strip_prefix(";;") {
            text = rest.split_once('\n').map(|(_, r)| r).unwrap_or("");
        } else if let Some(rest) = trimmed.strip_prefix("(;") {
            text = rest.split_once(";)").map(|(_, r)| r).unwrap_or("");
        } else {
            return trimmed;
        }
    }
}

/// Classifies the first bytes of a file (a few KiB are enough).
///
/// Binary: `\0asm` followed by version 1 (core module) or by a layer-1 component header. Text: the first
/// form, after white space and comments, is `(module` or `(component`. Anything else is `None`.
pub fn sniff(head: &[u8]) -> Option<WasmKind> {
    if let Some(rest) = head.strip_prefix(b"\0asm") {
        return match rest.get(2..4) {
            Some([1, 0]) => Some(WasmKind::Component),
            _ => Some(WasmKind::Module),
        };
    }
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        // A cut in the middle of a multi-byte character at the end of the sample.
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
    };
    let text = skip_trivia(text);
    let word = text.strip_prefix('(')?.trim_start();
    if word.starts_with("module") {
        Some(WasmKind::Module)
    } else if word.starts_with("component") {
        Some(WasmKind::Component)
    } else {
        None
    }
}

/// True when `name` ends in `.wasm` or `.wat` (the `*-smart` handler rule).
pub fn has_wasm_suffix(name: &str) -> bool {
    name.ends_with(".wasm") || name.ends_with(".wat")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_text() {
        assert_eq!(sniff(b"\0asm\x01\0\0\0"), Some(WasmKind::Module));
        assert_eq!(sniff(b"\0asm\x0d\0\x01\0"), Some(WasmKind::Component));
        assert_eq!(sniff(b"(module)"), Some(WasmKind::Module));
        assert_eq!(
            sniff(b";; hello\n  (; block ;) ( component )"),
            Some(WasmKind::Component)
        );
        assert_eq!(sniff(b"\x7fELF\x02\x01"), None);
        assert_eq!(sniff(b"#!/bin/sh\n"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"(moduleish"), Some(WasmKind::Module));
        assert!(has_wasm_suffix("/app/x.wasm") && has_wasm_suffix("a.wat"));
        assert!(!has_wasm_suffix("/bin/sh"));
    }
}
