-- wrk script: the hello-world baseline, plain GET of the URL given to wrk.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

wrk.method = "GET"
