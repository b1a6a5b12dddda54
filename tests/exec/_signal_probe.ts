/**
 * Ends itself by the signal given (32 or 33, which glibc keeps for itself): a process Deno starts
 * has them ignored, and glibc's `sigaction` refuses them, so their default action is set back
 * with the raw system call (Linux, x86_64 or aarch64) before the signal is sent. Prints `before`
 * first. Run by `runner_test.ts` with `--allow-ffi`.
 *
 * @module
 */
const signal = BigInt(Deno.args[0]);
const [rtSigaction, kill, getpid] = Deno.build.arch === "x86_64"
  ? [13n, 62n, 39n]
  : [134n, 129n, 172n];
const libc = Deno.dlopen("libc.so.6", {
  syscall: { parameters: ["i64", "i64", "i64", "i64", "i64"], result: "i64" },
});
console.log("before");
// struct kernel_sigaction all zero: SIG_DFL, no flags, an empty mask.
const defaultAction = new BigUint64Array(4);
const pointer = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(defaultAction)));
libc.symbols.syscall(rtSigaction, signal, pointer, 0n, 8n);
const pid = libc.symbols.syscall(getpid, 0n, 0n, 0n, 0n);
libc.symbols.syscall(kill, BigInt(pid), signal, 0n, 0n);
