-- wrk -t1 -c50 -d4s -s e2e_wrk.lua http://127.0.0.1:PORT/api/me -- KEYFILE (benchmarks/e2e.py)
-- Each request carries the next header line of KEYFILE, formatted once in init (a table lookup
-- per request); done() prints one JSON line for the driver.
local requests = {}
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    if name then
      requests[#requests + 1] = wrk.format("GET", wrk.path, { [name] = value })
    end
  end
  -- Connections start at different keys, as different clients would.
  i = math.random(#requests) - 1
end

function request()
  i = i % #requests + 1
  return requests[i]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_s": %.6f, "non2xx": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
