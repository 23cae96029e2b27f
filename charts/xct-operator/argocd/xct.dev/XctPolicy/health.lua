-- Argo CD health of an XctPolicy or an XctApproval (XctApproval/health.lua
-- links here) from their kstatus conditions (Lua 5.1 to 5.4). Progressing:
-- not yet observed or considered; Degraded: Stalled (a policy that does not
-- compile vetoes every run it selects; an ignored approval cannot count and
-- a new one is needed); Healthy: Ready (compiled; accepted).
local hs = {}
local function condition(status, type)
  for _, c in ipairs(status.conditions or {}) do
    if c.type == type then return c end
  end
  return nil
end
local status = obj.status
local generation = obj.metadata.generation
if status == nil or (generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation)) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe it"
  return hs
end
local stalled = condition(status, "Stalled")
local ready = condition(status, "Ready")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
else
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
end
return hs
