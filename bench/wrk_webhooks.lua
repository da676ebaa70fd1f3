-- Replays pre-signed webhook requests with wrk; written by bench/webhook_intake.py.
--
--   wrk -t2 -c64 -d20s --latency -s bench/wrk_webhooks.lua http://127.0.0.1:8000 -- requests.tsv 2
--
-- requests.tsv: one request per line, tab-separated: path, body, then header name/value pairs. Bodies are
-- compact JSON (no tabs or newlines). Thread k of n sends lines k, k+n, k+2n, ... in order, so no two
-- threads send the same line, and cycles through its share if the run outlasts it. At the end, each thread
-- reports how many requests it generated and how many got a response, so the caller knows exactly which
-- events were sent and how many requests were still unanswered when wrk stopped.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local function split_tabs(line)
  local fields = {}
  local start = 1
  while true do
    local i = string.find(line, "\t", start, true)
    if not i then
      table.insert(fields, string.sub(line, start))
      return fields
    end
    table.insert(fields, string.sub(line, start, i - 1))
    start = i + 1
  end
end

function init(args)
  local path = args[1]
  local nthreads = tonumber(args[2] or "1")
  reqs = {}
  sent = 0
  answered = 0
  local lineno = 0
  for line in io.lines(path) do
    if (lineno % nthreads) == id then
      local f = split_tabs(line)
      local headers = {}
      for i = 3, #f - 1, 2 do
        headers[f[i]] = f[i + 1]
      end
      table.insert(reqs, wrk.format("POST", f[1], headers, f[2]))
    end
    lineno = lineno + 1
  end
  if #reqs == 0 then
    error("no requests for thread " .. id .. " in " .. path)
  end
end

function request()
  sent = sent + 1
  return reqs[((sent - 1) % #reqs) + 1]
end

function response(status, headers, body)
  answered = answered + 1
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    io.write(string.format("WEDSYNC_THREAD %d %d %d\n", thread:get("id"), thread:get("sent"),
      thread:get("answered")))
  end
end
