-- wrk script: 16 requests per write, as in TechEmpower's plaintext test.
-- Usage: wrk -t1 -c100 -d10s -s benches/http/pipeline.lua http://127.0.0.1:8080/ -- 16
local depth = 16

init = function(args)
   depth = tonumber(args[1]) or depth
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format(nil)
   end
   req = table.concat(r)
end

request = function()
   return req
end
