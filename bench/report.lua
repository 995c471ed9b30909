-- Shared wrk done() callback for bench/run.sh: prints one machine-readable line.
--
--   LATCHKEY_BENCH rps=<req/s> p50_ms=<ms> p99_ms=<ms> requests=<n> errors_status=<n> errors_socket=<n> duration_s=<s>
--
-- wrk reports latency in microseconds and duration in microseconds. `errors_status` is wrk's count of
-- responses with an HTTP status >= 400; `errors_socket` sums connect/read/write/timeout errors. Either
-- one non-zero means the scenario did not measure what it claims, and run.sh flags it.
function done(summary, latency, requests)
   local seconds = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "LATCHKEY_BENCH rps=%.2f p50_ms=%.3f p99_ms=%.3f requests=%d errors_status=%d errors_socket=%d duration_s=%.2f\n",
      summary.requests / seconds,
      latency:percentile(50) / 1000,
      latency:percentile(99) / 1000,
      summary.requests,
      e.status,
      e.connect + e.read + e.write + e.timeout,
      seconds))
end
