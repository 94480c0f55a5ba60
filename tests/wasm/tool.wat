;; A WASI preview 1 test guest: runs the commands given as its arguments, in order, and prints one
;; result line per command on stdout. Paths starting with '/' are opened in the preopen "/", others in
;; the preopen "." (the container's cwd), as wasi-libc does.
;;
;;   echo TEXT        print TEXT
;;   cat PATH         open PATH read-only: "ok:<content>" or "err:<wasi errno>"
;;   write PATH TEXT  create/truncate PATH write-only and write TEXT: "ok" or "err:<wasi errno>"
;;   ftype FD         "ftype:<filetype of FD>" (2 = character device, e.g. a terminal)
;;   grow             grow memory 1 MiB at a time: "grew:<pages> fail" when memory.grow returned -1,
;;                    "grew:<pages> cap" after 256 MiB
;;   args             print the raw argv buffer (NUL-terminated strings) and stop
;;   env              print the raw environ buffer (NUL-terminated strings) and stop
;;   exit N           proc_exit(N)
;;   trap             execute `unreachable`
;;   spin             loop forever
;;
;; Memory: 0..64 scratch; 256..1024 strings; 1024 argv pointers; 2048..16384 argv buffer;
;; 16384 environ pointers; 24576..32768 read buffer; 40000..40032 digits; 65536.. environ buffer.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fd_fdstat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $fd_prestat_dir_name (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)

  (data (i32.const 256) "ok:")
  (data (i32.const 272) "err:")
  (data (i32.const 288) "\n")
  (data (i32.const 304) "cat")
  (data (i32.const 320) "write")
  (data (i32.const 336) "echo")
  (data (i32.const 352) "exit")
  (data (i32.const 368) "trap")
  (data (i32.const 384) "spin")
  (data (i32.const 400) "args")
  (data (i32.const 416) "env")
  (data (i32.const 432) "grow")
  (data (i32.const 448) "grew:")
  (data (i32.const 464) ".")
  (data (i32.const 480) "/")
  (data (i32.const 496) "ok")
  (data (i32.const 512) "unknown command: ")
  (data (i32.const 544) " fail")
  (data (i32.const 560) " cap")
  (data (i32.const 576) "ftype")
  (data (i32.const 592) "ftype:")

  (global $argc (mut i32) (i32.const 0))
  (global $argsize (mut i32) (i32.const 0))
  (global $root (mut i32) (i32.const -1))
  (global $cwd (mut i32) (i32.const -1))
  (global $errno (mut i32) (i32.const 0))

  ;; Writes all of [p, p+n) to fd.
  (func $write (param $fd i32) (param $p i32) (param $n i32)
    (loop $more
      (if (i32.gt_s (local.get $n) (i32.const 0))
        (then
          (i32.store (i32.const 0) (local.get $p))
          (i32.store (i32.const 4) (local.get $n))
          (if (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))
            (then (return)))
          (if (i32.eqz (i32.load (i32.const 8))) (then (return)))
          (local.set $p (i32.add (local.get $p) (i32.load (i32.const 8))))
          (local.set $n (i32.sub (local.get $n) (i32.load (i32.const 8))))
          (br $more)))))

  (func $print (param $p i32) (param $n i32)
    (call $write (i32.const 1) (local.get $p) (local.get $n)))

  (func $nl (call $print (i32.const 288) (i32.const 1)))

  (func $print_num (param $v i32)
    (local $p i32)
    (local.set $p (i32.const 40032))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (br_if $digit (local.get $v)))
    (call $print (local.get $p) (i32.sub (i32.const 40032) (local.get $p))))

  (func $print_err
    (call $print (i32.const 272) (i32.const 4))
    (call $print_num (global.get $errno))
    (call $nl))

  (func $strlen (param $p i32) (result i32)
    (local $q i32)
    (local.set $q (local.get $p))
    (block $done
      (loop $l
        (br_if $done (i32.eqz (i32.load8_u (local.get $q))))
        (local.set $q (i32.add (local.get $q) (i32.const 1)))
        (br $l)))
    (i32.sub (local.get $q) (local.get $p)))

  ;; The NUL-terminated string at s equals the n bytes at lit.
  (func $is (param $s i32) (param $lit i32) (param $n i32) (result i32)
    (local $i i32)
    (if (i32.ne (call $strlen (local.get $s)) (local.get $n)) (then (return (i32.const 0))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $s) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $lit) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (i32.const 1))

  (func $atoi (param $p i32) (result i32)
    (local $v i32) (local $c i32)
    (block $done
      (loop $l
        (local.set $c (i32.load8_u (local.get $p)))
        (br_if $done (i32.lt_u (local.get $c) (i32.const 48)))
        (br_if $done (i32.gt_u (local.get $c) (i32.const 57)))
        (local.set $v (i32.add (i32.mul (local.get $v) (i32.const 10))
                               (i32.sub (local.get $c) (i32.const 48))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $l)))
    (local.get $v))

  (func $arg (param $i i32) (result i32)
    (if (i32.ge_u (local.get $i) (global.get $argc)) (then (return (i32.const 300))))
    (i32.load (i32.add (i32.const 1024) (i32.shl (local.get $i) (i32.const 2)))))

  ;; The preopened directory whose guest name is the single byte at name, or -1.
  (func $find_preopen (param $name i32) (result i32)
    (local $fd i32)
    (local.set $fd (i32.const 3))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $fd) (i32.const 64)))
        (if (i32.eqz (call $fd_prestat_get (local.get $fd) (i32.const 16)))
          (then
            (if (i32.and (i32.eqz (i32.load8_u (i32.const 16)))
                         (i32.eq (i32.load (i32.const 20)) (i32.const 1)))
              (then
                (if (i32.eqz (call $fd_prestat_dir_name (local.get $fd) (i32.const 48) (i32.const 1)))
                  (then
                    (if (i32.eq (i32.load8_u (i32.const 48)) (i32.load8_u (local.get $name)))
                      (then (return (local.get $fd))))))))))
        (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
        (br $l)))
    (i32.const -1))

  ;; Opens path (NUL-terminated) with oflags and rights; the fd, or -1 with $errno set.
  (func $open (param $path i32) (param $oflags i32) (param $rights i64) (result i32)
    (local $dir i32) (local $n i32)
    (local.set $dir (global.get $cwd))
    (block $done
      (loop $l
        (br_if $done (i32.ne (i32.load8_u (local.get $path)) (i32.const 47)))
        (local.set $dir (global.get $root))
        (local.set $path (i32.add (local.get $path) (i32.const 1)))
        (br $l)))
    (local.set $n (call $strlen (local.get $path)))
    (if (i32.eqz (local.get $n))
      (then (local.set $path (i32.const 464)) (local.set $n (i32.const 1))))
    (global.set $errno
      (call $path_open (local.get $dir) (i32.const 1) (local.get $path) (local.get $n)
        (local.get $oflags) (local.get $rights) (local.get $rights) (i32.const 0) (i32.const 12)))
    (if (result i32) (global.get $errno)
      (then (i32.const -1))
      (else (i32.load (i32.const 12)))))

  (func $cat (param $path i32)
    (local $fd i32) (local $total i32)
    (local.set $fd (call $open (local.get $path) (i32.const 0) (i64.const 2)))
    (if (i32.lt_s (local.get $fd) (i32.const 0)) (then (call $print_err) (return)))
    (block $eof
      (loop $l
        (i32.store (i32.const 0) (i32.add (i32.const 24576) (local.get $total)))
        (i32.store (i32.const 4) (i32.sub (i32.const 8192) (local.get $total)))
        (global.set $errno (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
        (if (global.get $errno)
          (then (drop (call $fd_close (local.get $fd))) (call $print_err) (return)))
        (br_if $eof (i32.eqz (i32.load (i32.const 8))))
        (local.set $total (i32.add (local.get $total) (i32.load (i32.const 8))))
        (br_if $l (i32.lt_u (local.get $total) (i32.const 8192)))))
    (drop (call $fd_close (local.get $fd)))
    (call $print (i32.const 256) (i32.const 3))
    (call $print (i32.const 24576) (local.get $total))
    (call $nl))

  (func $write_file (param $path i32) (param $text i32)
    (local $fd i32)
    ;; O_CREAT | O_TRUNC, right fd_write only.
    (local.set $fd (call $open (local.get $path) (i32.const 9) (i64.const 64)))
    (if (i32.lt_s (local.get $fd) (i32.const 0)) (then (call $print_err) (return)))
    (i32.store (i32.const 0) (local.get $text))
    (i32.store (i32.const 4) (call $strlen (local.get $text)))
    (global.set $errno (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
    (drop (call $fd_close (local.get $fd)))
    (if (global.get $errno) (then (call $print_err) (return)))
    (call $print (i32.const 496) (i32.const 2))
    (call $nl))

  (func $grow
    (local $pages i32)
    (block $done
      (loop $l
        (if (i32.ge_u (local.get $pages) (i32.const 4096))
          (then
            (call $print (i32.const 448) (i32.const 5))
            (call $print_num (local.get $pages))
            (call $print (i32.const 560) (i32.const 4))
            (call $nl)
            (return)))
        (br_if $done (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
        (local.set $pages (i32.add (local.get $pages) (i32.const 16)))
        (br $l)))
    (call $print (i32.const 448) (i32.const 5))
    (call $print_num (local.get $pages))
    (call $print (i32.const 544) (i32.const 5))
    (call $nl))

  (func $ftype (param $fd i32)
    (global.set $errno (call $fd_fdstat_get (local.get $fd) (i32.const 16)))
    (if (global.get $errno) (then (call $print_err) (return)))
    (call $print (i32.const 592) (i32.const 6))
    (call $print_num (i32.load8_u (i32.const 16)))
    (call $nl))

  (func (export "_start")
    (local $i i32) (local $c i32)
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (global.set $argc (i32.load (i32.const 0)))
    (global.set $argsize (i32.load (i32.const 4)))
    (if (i32.gt_u (i32.load (i32.const 4)) (i32.const 14336)) (then (call $proc_exit (i32.const 3))))
    (if (i32.gt_u (global.get $argc) (i32.const 255)) (then (call $proc_exit (i32.const 3))))
    (drop (call $args_get (i32.const 1024) (i32.const 2048)))
    (global.set $root (call $find_preopen (i32.const 480)))
    (global.set $cwd (call $find_preopen (i32.const 464)))
    (local.set $i (i32.const 1))
    (block $end
      (loop $next
        (br_if $end (i32.ge_u (local.get $i) (global.get $argc)))
        (local.set $c (call $arg (local.get $i)))
        (if (call $is (local.get $c) (i32.const 336) (i32.const 4))
          (then
            (local.set $c (call $arg (i32.add (local.get $i) (i32.const 1))))
            (call $print (local.get $c) (call $strlen (local.get $c)))
            (call $nl)
            (local.set $i (i32.add (local.get $i) (i32.const 2)))
            (br $next)))
        (if (call $is (local.get $c) (i32.const 304) (i32.const 3))
          (then
            (call $cat (call $arg (i32.add (local.get $i) (i32.const 1))))
            (local.set $i (i32.add (local.get $i) (i32.const 2)))
            (br $next)))
        (if (call $is (local.get $c) (i32.const 320) (i32.const 5))
          (then
            (call $write_file (call $arg (i32.add (local.get $i) (i32.const 1)))
                              (call $arg (i32.add (local.get $i) (i32.const 2))))
            (local.set $i (i32.add (local.get $i) (i32.const 3)))
            (br $next)))
        (if (call $is (local.get $c) (i32.const 576) (i32.const 5))
          (then
            (call $ftype (call $atoi (call $arg (i32.add (local.get $i) (i32.const 1)))))
            (local.set $i (i32.add (local.get $i) (i32.const 2)))
            (br $next)))
        (if (call $is (local.get $c) (i32.const 432) (i32.const 4))
          (then
            (call $grow)
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $next)))
        (if (call $is (local.get $c) (i32.const 352) (i32.const 4))
          (then (call $proc_exit (call $atoi (call $arg (i32.add (local.get $i) (i32.const 1)))))))
        (if (call $is (local.get $c) (i32.const 368) (i32.const 4))
          (then unreachable))
        (if (call $is (local.get $c) (i32.const 384) (i32.const 4))
          (then (loop $forever (br $forever))))
        (if (call $is (local.get $c) (i32.const 400) (i32.const 4))
          (then
            (call $print (i32.const 2048) (global.get $argsize))
            (return)))
        (if (call $is (local.get $c) (i32.const 416) (i32.const 3))
          (then
            (drop (call $environ_sizes_get (i32.const 0) (i32.const 4)))
            (if (i32.gt_u (i32.load (i32.const 0)) (i32.const 2000))
              (then (call $proc_exit (i32.const 3))))
            (if (i32.gt_u (i32.load (i32.const 4)) (i32.const 65536))
              (then (call $proc_exit (i32.const 3))))
            (local.set $c (i32.load (i32.const 4)))
            (drop (call $environ_get (i32.const 16384) (i32.const 65536)))
            (call $print (i32.const 65536) (local.get $c))
            (return)))
        (call $print (i32.const 512) (i32.const 17))
        (call $print (local.get $c) (call $strlen (local.get $c)))
        (call $nl)
        (call $proc_exit (i32.const 2))))))
