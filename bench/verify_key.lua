-- wrk script: POST /api/auth/api-key/verify (the URL given to wrk) with the key from env BENCH_API_KEY,
-- as a resource server would (no other credential).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local key = os.getenv("BENCH_API_KEY")
if key == nil or key == "" then
   error("verify_key.lua: set BENCH_API_KEY")
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"key":"' .. key .. '"}'
