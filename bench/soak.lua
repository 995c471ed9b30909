-- wrk script for bench/soak.sh: one kind of request per wrk process (BENCH_SOAK_KIND), each answer judged
-- against what it must be, and one machine-readable line at the end:
--
--   LATCHKEY_SOAK rps=<req/s> p50_ms=<ms> p99_ms=<ms> requests=<n> expected_4xx=<n> unexpected=<n> socket_errors=<n>
--
-- Kinds (the checks are the cached hot paths; the flows revoke what they make):
--   session   GET /api/auth/get-session with the cookies in BENCH_COOKIE (cookie cache)      → 200
--   key       GET /api/auth/check with x-api-key BENCH_API_KEY (key cache)                  → 200
--   token     GET /v1/me with Authorization: Bearer BENCH_SERVICE_TOKEN (verified-token cache) → 200
--   signin    per connection, in turn: sign-in of BENCH_EMAIL / BENCH_PASSWORD → 200 with a session
--             token; list-sessions with it as Bearer → 200; sign-out with it → 200; list-sessions with
--             it again → 401 (the expected 4xx: the revoked session is refused)
--   keyflow   per connection, in turn: api-key/create with Bearer BENCH_SESSION_TOKEN → 200 with a key;
--             check with the key → 200; api-key/delete → 200; check with the deleted key → 401 (expected)
-- Any other status is counted as unexpected. The flows keep their state per thread, so soak.sh runs them
-- with one connection per thread.
local kind = os.getenv("BENCH_SOAK_KIND")

local threads = {}
function setup(thread)
   table.insert(threads, thread)
end

expected_4xx = 0
unexpected = 0
reissued = 0

local function need(name)
   local value = os.getenv(name)
   if value == nil or value == "" then error("soak.lua: set " .. name) end
   return value
end

local cookie, api_key, service_token, email, password, session_token
if kind == "session" then
   cookie = need("BENCH_COOKIE")
elseif kind == "key" then
   api_key = need("BENCH_API_KEY")
elseif kind == "token" then
   service_token = need("BENCH_SERVICE_TOKEN")
elseif kind == "signin" then
   email, password = need("BENCH_EMAIL"), need("BENCH_PASSWORD")
elseif kind == "keyflow" then
   session_token = need("BENCH_SESSION_TOKEN")
else
   error("soak.lua: BENCH_SOAK_KIND must be session, key, token, signin or keyflow")
end

local json = { ["Content-Type"] = "application/json" }
local step = 1
local flow_token, flow_key, flow_key_id

local function bearer(token)
   return { ["Authorization"] = "Bearer " .. token }
end

function request()
   if kind == "session" then
      return wrk.format("GET", "/api/auth/get-session", { ["Cookie"] = cookie })
   elseif kind == "key" then
      return wrk.format("GET", "/api/auth/check", { ["x-api-key"] = api_key })
   elseif kind == "token" then
      return wrk.format("GET", "/v1/me", bearer(service_token))
   elseif kind == "signin" then
      if step == 1 then
         return wrk.format("POST", "/api/auth/sign-in/email", json,
            '{"email":"' .. email .. '","password":"' .. password .. '"}')
      elseif step == 3 then
         return wrk.format("POST", "/api/auth/sign-out", bearer(flow_token))
      end
      return wrk.format("GET", "/api/auth/list-sessions", bearer(flow_token))
   end
   -- keyflow
   if step == 1 then
      local headers = bearer(session_token)
      headers["Content-Type"] = "application/json"
      return wrk.format("POST", "/api/auth/api-key/create", headers, '{"name":"soak"}')
   elseif step == 3 then
      local headers = bearer(session_token)
      headers["Content-Type"] = "application/json"
      return wrk.format("POST", "/api/auth/api-key/delete", headers, '{"keyId":"' .. flow_key_id .. '"}')
   end
   return wrk.format("GET", "/api/auth/check", { ["x-api-key"] = flow_key })
end

-- The status each step must get; the last step of a flow expects the 401 of a revoked credential.
local function judge(status, want)
   if status == want then
      if status >= 400 then expected_4xx = expected_4xx + 1 end
      return true
   end
   unexpected = unexpected + 1
   return false
end

-- A browser keeps the cache cookie a check re-issues (each time the cookie cache's window, 5 min by
-- default, runs out): so does this script, or from then on every "cached" check would be a database read.
local function keep_reissued_cache_cookie(headers)
   local set = headers["Set-Cookie"] or headers["set-cookie"]
   if set == nil then return end
   local name, value = set:match("([%w%._%-]*session_data)=([^;]*)")
   if name ~= nil and value ~= "" then
      cookie = cookie:gsub("[%w%._%-]*session_data=[^;]*", function() return name .. "=" .. value end)
      reissued = reissued + 1
   end
end

function response(status, headers, body)
   if kind == "session" then
      if judge(status, 200) then keep_reissued_cache_cookie(headers) end
      return
   end
   if kind == "key" or kind == "token" then
      judge(status, 200)
      return
   end
   -- The flows' first step keeps what the next ones use; steps 2 and 3 must succeed, step 4 (the revoked
   -- credential) must be refused; any miss starts the flow again.
   if step == 1 then
      local kept
      if kind == "signin" then
         flow_token = body:match('"token":"([^"]+)"')
         kept = flow_token ~= nil
      else
         flow_key = body:match('"key":"([^"]+)"')
         flow_key_id = body:match('"id":"([^"]+)"')
         kept = flow_key ~= nil and flow_key_id ~= nil
      end
      if judge(status, 200) and kept then step = 2 end
   elseif step == 2 or step == 3 then
      step = judge(status, 200) and step + 1 or 1
   else
      judge(status, 401)
      step = 1
   end
end

function done(summary, latency, requests)
   local expected, wrong, cookies = 0, 0, 0
   for _, thread in ipairs(threads) do
      expected = expected + (thread:get("expected_4xx") or 0)
      wrong = wrong + (thread:get("unexpected") or 0)
      cookies = cookies + (thread:get("reissued") or 0)
   end
   if kind == "session" then io.write(string.format("cache cookies re-issued and kept: %d\n", cookies)) end
   local e = summary.errors
   io.write(string.format(
      "LATCHKEY_SOAK rps=%.2f p50_ms=%.3f p99_ms=%.3f requests=%d expected_4xx=%d unexpected=%d socket_errors=%d\n",
      summary.requests / (summary.duration / 1e6),
      latency:percentile(50) / 1000,
      latency:percentile(99) / 1000,
      summary.requests,
      expected,
      wrong,
      e.connect + e.read + e.write + e.timeout))
end
