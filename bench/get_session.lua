-- wrk script: GET /api/auth/get-session (the path, with or without ?disableCookieCache=true, comes from
-- the URL given to wrk) carrying the session cookies in env BENCH_COOKIE
-- ("latchkey.session_token=...; latchkey.session_data=...").
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local cookie = os.getenv("BENCH_COOKIE")
if cookie == nil or cookie == "" then
   error("get_session.lua: set BENCH_COOKIE to the session cookies")
end
wrk.method = "GET"
wrk.headers["Cookie"] = cookie
