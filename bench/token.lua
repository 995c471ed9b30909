-- wrk script: POST /v1/token (the URL given to wrk) with the client key from env BENCH_CLIENT_KEY and the
-- user from BENCH_USER_ID / BENCH_USER_SECRET, as a backend issuing service tokens would.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local key, user, secret = os.getenv("BENCH_CLIENT_KEY"), os.getenv("BENCH_USER_ID"), os.getenv("BENCH_USER_SECRET")
if key == nil or user == nil or secret == nil then
   error("token.lua: set BENCH_CLIENT_KEY, BENCH_USER_ID and BENCH_USER_SECRET")
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = key
wrk.body = '{"userId":"' .. user .. '","secret":"' .. secret .. '"}'
