-- wrk script: POST the URL given to wrk with a form body from env BENCH_FORM (e.g. a client-credentials
-- token request: grant_type=client_credentials&client_id=…&client_secret=…&audience=…).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local form = os.getenv("BENCH_FORM")
if form == nil or form == "" then
   error("form.lua: set BENCH_FORM")
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = form
