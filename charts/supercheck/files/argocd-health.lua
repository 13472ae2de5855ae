-- Argo CD health check for Supercheck's TestRun and JobRun (supercheck.io).
-- Install it in argocd-cm under both keys (the chart's values.yaml shows how):
--   resource.customizations.health.supercheck.io_TestRun
--   resource.customizations.health.supercheck.io_JobRun
-- Argo CD calls it with the live object as `obj` and reads `hs.status` and `hs.message`.
--   Progressing  the run has not ended (or the operator has not seen this spec yet)
--   Healthy      it ended Passed
--   Degraded     it ended any other way (Failed, Error, TimedOut, Rejected, Cancelled)
-- It reads the conditions the operator writes with the phase (docs/operator.md#conditions).
local hs = {}
local status = obj.status or {}

local function condition(ctype)
  for _, c in ipairs(status.conditions or {}) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function describe()
  local phase = status.phase or "Pending"
  local text = phase
  if status.result ~= nil and status.result ~= string.lower(phase) then
    text = text .. " (" .. status.result .. ")"
  end
  if status.message ~= nil and status.message ~= "" then
    text = text .. ": " .. status.message
  end
  return text
end

local completed = condition("Completed")
if completed == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the Supercheck operator"
  return hs
end
local generation = (obj.metadata or {}).generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "the operator has not acted on generation " .. tostring(generation) .. " of the spec"
  return hs
end
if completed.status ~= "True" then
  hs.status = "Progressing"
  hs.message = describe()
  return hs
end
local succeeded = condition("Succeeded")
if succeeded ~= nil and succeeded.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Degraded"
end
hs.message = describe()
return hs
