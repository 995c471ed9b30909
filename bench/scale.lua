-- wrk script for bench/scale.sh: requests spread over many generated rows, so that no cache answers and
-- every request reads the database. BENCH_SCALE_KIND chooses what is sent:
--
--   cookie   GET (the URL given to wrk) with `Cookie: <line>`, the lines of BENCH_SCALE_FILE taken in turn
--            from a random start per thread (signed session-token cookies of generated sessions)
--   key      GET with `x-api-key: lk_<i as 48 digits>`, i uniform in 1..BENCH_SCALE_COUNT (generated keys)
--   sign_in  POST a JSON sign-in of u<i>@scale.example with BENCH_SCALE_PASSWORD, i uniform in
--            1..BENCH_SCALE_COUNT (generated users, all sharing one real Argon2id hash)
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local kind = os.getenv("BENCH_SCALE_KIND")
local count = tonumber(os.getenv("BENCH_SCALE_COUNT") or "0")
local file = os.getenv("BENCH_SCALE_FILE")
local password = os.getenv("BENCH_SCALE_PASSWORD") or ""
if kind ~= "cookie" and kind ~= "key" and kind ~= "sign_in" then
   error("scale.lua: set BENCH_SCALE_KIND to cookie, key or sign_in")
end

local threads = 0
function setup(thread)
   thread:set("thread_index", threads)
   threads = threads + 1
end

local lines = {}
local cursor = 0
function init(args)
   math.randomseed(os.time() * 1000 + (thread_index or 0) * 7919)
   if kind == "cookie" then
      if file == nil then error("scale.lua: set BENCH_SCALE_FILE") end
      for line in io.lines(file) do
         if line ~= "" then lines[#lines + 1] = line end
      end
      if #lines == 0 then error("scale.lua: no lines in " .. file) end
      cursor = math.random(#lines) - 1
   elseif count < 1 then
      error("scale.lua: set BENCH_SCALE_COUNT")
   end
end

function request()
   if kind == "cookie" then
      cursor = cursor % #lines + 1
      return wrk.format("GET", nil, { ["Cookie"] = lines[cursor] })
   elseif kind == "key" then
      local key = "lk_" .. string.format("%048d", math.random(count))
      return wrk.format("GET", nil, { ["x-api-key"] = key })
   end
   local body = '{"email":"u' .. math.random(count) .. '@scale.example","password":"' .. password .. '"}'
   return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
