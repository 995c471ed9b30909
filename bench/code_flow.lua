-- wrk script: the authorization-code flow of a signed-in browser, end to end: GET /authorize with the SSO
-- session cookie (env BENCH_COOKIE) → 302 with a code → POST /oauth/token with the code and the PKCE
-- verifier. Each connection alternates the two; a flow is two requests, so flows/s = req/s ÷ 2.
-- BENCH_AUTHORIZE is the authorize path and query; BENCH_CLIENT_ID, BENCH_REDIRECT_URI, BENCH_VERIFIER
-- the token request's fields.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local cookie = os.getenv("BENCH_COOKIE")
local authorize = os.getenv("BENCH_AUTHORIZE")
local client = os.getenv("BENCH_CLIENT_ID")
local redirect = os.getenv("BENCH_REDIRECT_URI")
local verifier = os.getenv("BENCH_VERIFIER")
if cookie == nil or authorize == nil or client == nil or redirect == nil or verifier == nil then
   error("code_flow.lua: set BENCH_COOKIE, BENCH_AUTHORIZE, BENCH_CLIENT_ID, BENCH_REDIRECT_URI, BENCH_VERIFIER")
end

local function urlencode(s)
   return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local codes = {}
function request()
   local code = table.remove(codes, 1)
   if code == nil then
      return wrk.format("GET", authorize, { ["Cookie"] = cookie })
   end
   return wrk.format("POST", "/oauth/token", { ["Content-Type"] = "application/x-www-form-urlencoded" },
      "grant_type=authorization_code&client_id=" .. client .. "&code=" .. code .. "&redirect_uri=" ..
      urlencode(redirect) .. "&code_verifier=" .. verifier)
end

function response(status, headers, body)
   local location = headers["Location"] or headers["location"]
   if location ~= nil then
      local code = location:match("[?&]code=([^&]+)")
      if code ~= nil then table.insert(codes, code) end
   end
end
