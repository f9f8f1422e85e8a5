-- wrk script: rotate through distinct credentials, one header line per request.
-- Usage: wrk ... -s tokens.lua URL -- HEADERS_FILE
-- HEADERS_FILE holds one "Name: value" line per session; each thread starts at
-- its own offset so the threads do not present the same session in step.
-- At the end, prints one JSON line with the figures the harness reads.

local headers = {}
local counter = 0
local thread_count = 0
local threads = {}

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  for line in io.lines(path) do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    if name then
      table.insert(headers, {name = name, value = value})
    end
  end
  counter = (id or 0) * 7
end

function request()
  counter = counter + 1
  local item = headers[(counter % #headers) + 1]
  return wrk.format("GET", nil, {[item.name] = item.value})
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
