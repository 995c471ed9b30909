-- wrk script: POST /api/auth/sign-in/email (the URL given to wrk) as a non-browser client (no Origin),
-- with the account from env BENCH_EMAIL / BENCH_PASSWORD (defaults: the account run.sh signs up).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local email = os.getenv("BENCH_EMAIL") or "bench@example.com"
local password = os.getenv("BENCH_PASSWORD") or "correct horse battery staple"

-- JSON string escaping for the two values (quotes and backslashes; the defaults need none).
local function json_string(s)
   return '"' .. s:gsub('[\\"]', '\\%0') .. '"'
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":' .. json_string(email) .. ',"password":' .. json_string(password) .. '}'
