-- Argo CD health of an XctRun (Lua 5.1 to 5.4; no globals but obj and hs).
-- Progressing: not yet observed, or working toward its goal; Suspended:
-- awaiting a human approval, or suspended; Healthy: succeeded; Degraded:
-- failed, or stalled (an invalid spec, a status it cannot write).
local hs = {}
local function condition(status, type)
  for _, c in ipairs(status.conditions or {}) do
    if c.type == type then return c end
  end
  return nil
end
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the run"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
local message = status.message or status.phase
local stalled = condition(status, "Stalled")
if status.phase == "Succeeded" then
  hs.status = "Healthy"
elseif status.phase == "Failed" then
  hs.status = "Degraded"
elseif stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  if stalled.message ~= nil and stalled.message ~= "" then message = stalled.message end
elseif status.phase == "AwaitingApproval" or status.phase == "Suspended" then
  hs.status = "Suspended"
else
  hs.status = "Progressing"
end
hs.message = message
return hs
