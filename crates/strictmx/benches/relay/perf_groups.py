#!/usr/bin/env python3
"""Groups the relay's `perf record` samples into the cost groups of docs/benchmarks.md.

    perf script -i FILE -F ip,sym,dso | python3 perf_groups.py CPU_MS_PER_MESSAGE

A group's share is inclusive: the fraction of samples with at least one frame in the group, so
groups overlap. The second column is that share of the relay's CPU time per message.
"""
import re, sys, collections
P = lambda s: re.compile(s)
groups = [
 ("JSON logging (tracing-subscriber and the serde_json it calls)", P(r"<?tracing_subscriber::|<?tracing_core::(dispatcher|event)|<?tracing::span::Span::(new|record)")),
 ("spool records as JSON (serde_json under strictmx_spool::store)", "SPOOLJSON"),
 ("redb (all transactions: begin, tables, commit)", P(r"<?redb::")),
 ("  of which WriteTransaction::commit", P(r"<?redb::transactions::WriteTransaction::commit")),
 ("  of which read transactions", P(r"<?redb::(db::.*begin_read|transactions::ReadTransaction)")),
 ("  of which fdatasync/fsync in the kernel", P(r"(__x64_sys_fdatasync|__x64_sys_fsync|do_fsync|vfs_fsync_range)\b")),
 ("fact gathering and planning (strictmx_resolve, strictmx_policy)", P(r"<?strictmx_(resolve|policy)::")),
 ("TLS (rustls, ring)", P(r"<?(rustls|ring|tokio_rustls)::|ring_core")),
 ("allocation (malloc, free, realloc)", P(r"(malloc|free|realloc|calloc|cfree|_int_malloc|_int_free|_int_realloc|malloc_consolidate|__libc_malloc|__libc_free|__GI___libc_free|__GI___libc_malloc|__libc_realloc|__GI___libc_realloc|tcache_get|unlink_chunk|__rust_alloc|__rust_dealloc|__rust_realloc|__rdl_alloc|__rdl_dealloc|sysmalloc)\b")),
 ("memcpy/memmove (body and buffer copies)", P(r"__mem(cpy|move)")),
 ("inbound SMTP sessions (strictmx_inbound)", P(r"<?strictmx_inbound::")),
 ("SMTP grammar (strictmx_protocol)", P(r"<?strictmx_protocol::")),
 ("delivery (strictmx_delivery, all it calls)", P(r"<?strictmx_delivery::")),
 ("spool (strictmx_spool, all it calls)", P(r"<?strictmx_spool::")),
 ("socket and file syscalls (read/write/send/recv)", P(r"(__x64_sys_(sendto|recvfrom|write|read|writev|pwrite64|pread64|sendmsg|recvmsg))\b")),
 ("thread wakeups and context switches (futex, epoll, scheduler)", P(r"(__x64_sys_futex|__x64_sys_epoll_wait|finish_task_switch\S*|try_to_wake_up|schedule)\b")),
 ("metrics facade", P(r"<?(metrics|metrics_exporter_prometheus|metrics_util)::")),
]
cpu_ms = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
counts = collections.Counter(); total = 0; stack = []
def flush():
    global total
    if not stack: return
    total += 1
    for name, rx in groups:
        if rx == "SPOOLJSON":
            if any(re.match(r"<?serde_json::", f) for f in stack) and any(re.match(r"<?strictmx_spool::store", f) for f in stack) and not any(re.match(r"<?tracing_subscriber::", f) for f in stack):
                counts[name] += 1
        elif any(rx.match(f) for f in stack): counts[name] += 1
for line in sys.stdin:
    if not line.strip():
        flush(); stack = []; continue
    if line.startswith((" ", "\t")):
        parts = line.strip().split(None, 1)
        if len(parts) == 2:
            stack.append(re.sub(r"\s+\(\S*\)$", "", parts[1]))
flush()
print(f"samples: {total}")
for name, _ in groups:
    share = counts[name] / max(total, 1)
    print(f"{100*share:5.1f}%  {share*cpu_ms*1000:6.0f} us/msg  {name}")
