-- Argo CD health of a modelgate.dev ModelAlias, by the rule kstatus (Flux, kubectl-style waits)
-- applies to the conditions the modelgate controller writes:
--   not observed yet (no status, or status.observedGeneration behind metadata.generation)
--                                   -> Progressing
--   Reconciling=True (waiting, for a while, for an object it refers to) -> Progressing
--   Stalled=True (only an edit can help, or what it waits for never came) -> Degraded
--   Ready=True -> Healthy; Ready=False or Unknown -> Progressing
-- Runs as Argo CD runs health scripts: no string library, the object in `obj`.
local kind = "ModelAlias"
local function describe(c)
  local text = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end
if obj.status == nil or obj.status.observedGeneration == nil or obj.status.observedGeneration < 1 then
  return {status = "Progressing", message = "no modelgate controller has processed this " .. kind .. " yet (is one running, and do its --namespace and --selector include it?)"}
end
local generation = obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  return {status = "Progressing", message = "the modelgate controller has not processed generation " .. generation .. " yet (last processed: " .. obj.status.observedGeneration .. ")"}
end
local ready = nil
for _, c in ipairs(obj.status.conditions or {}) do
  if c.type == "Reconciling" and c.status == "True" then
    return {status = "Progressing", message = describe(c)}
  end
  if c.type == "Stalled" and c.status == "True" then
    return {status = "Degraded", message = describe(c)}
  end
  if c.type == "Ready" then
    ready = c
  end
end
if ready == nil then
  return {status = "Progressing", message = "the modelgate controller has not reported Ready yet"}
end
if ready.status == "True" then
  return {status = "Healthy", message = ready.message or ""}
end
return {status = "Progressing", message = describe(ready)}
