;; A WASI preview 1 command in WebAssembly text: prints a greeting with fd_write and returns from
;; _start (exit status 0). amphi runs the .wat file directly: no compiler or toolchain needed.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; The iovec (base, length) at 0, the count of bytes written at 8, the text at 16.
  (data (i32.const 16) "Hello from a WebAssembly container run by amphi (wasmtime)\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 59))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
