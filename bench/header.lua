-- wrk script: GET the URL given to wrk with one extra header from env BENCH_HEADER_NAME / BENCH_HEADER_VALUE
-- (e.g. "x-api-key" / "lk_…", or "Authorization" / "Bearer <extension token>").
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local name = os.getenv("BENCH_HEADER_NAME")
local value = os.getenv("BENCH_HEADER_VALUE")
if name == nil or name == "" or value == nil or value == "" then
   error("header.lua: set BENCH_HEADER_NAME and BENCH_HEADER_VALUE")
end
wrk.method = "GET"
wrk.headers[name] = value
