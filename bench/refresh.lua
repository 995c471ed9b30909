-- wrk script: refresh-token grants at the URL given to wrk (POST /oauth/token), as SPAs make them: each
-- family's newest token is sent, and each answer's new refresh token (it names its family: grant id,
-- dot, secret) replaces it. The families come from the file BENCH_REFRESH_FILE (one refresh token per
-- line, twice as many as connections), shared out between wrk's threads and used round-robin, so a family
-- is normally back from its last refresh before it is used again (if not, the previous token within the
-- leeway gets the same successor: no error, no rotation). BENCH_CLIENT_ID is the public client.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local file = os.getenv("BENCH_REFRESH_FILE")
local client = os.getenv("BENCH_CLIENT_ID")
if file == nil or client == nil then
   error("refresh.lua: set BENCH_REFRESH_FILE and BENCH_CLIENT_ID")
end

local counter = 0
function setup(thread)
   thread:set("index", counter)
   counter = counter + 1
end

local families = {}
local current = {}
local cursor = 0

local function family_of(token)
   return token:match("^([^.]+)%.")
end

function init(args)
   local all = {}
   for line in io.lines(file) do
      if line ~= "" then table.insert(all, line) end
   end
   local count = tonumber(os.getenv("BENCH_THREADS_COUNT") or "2")
   for i, token in ipairs(all) do
      if (i - 1) % count == index then
         local family = family_of(token)
         table.insert(families, family)
         current[family] = token
      end
   end
   if #families == 0 then
      error("refresh.lua: no refresh tokens for this thread in " .. file)
   end
end

function request()
   cursor = cursor % #families + 1
   local token = current[families[cursor]]
   return wrk.format("POST", nil, { ["Content-Type"] = "application/x-www-form-urlencoded" },
      "grant_type=refresh_token&client_id=" .. client .. "&refresh_token=" .. token)
end

function response(status, headers, body)
   local token = body:match('"refresh_token":"([^"]+)"')
   if token ~= nil then
      local family = family_of(token)
      if current[family] ~= nil then current[family] = token end
   end
end
