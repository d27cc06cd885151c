-- wrk script: POST one order per request (web channel, one item, test=true) with a bearer key.
-- Usage: OMS_API_KEY=$(cat .oms/dev-api-key) wrk -t1 -c32 -d10s --latency -s bench/place.lua \
--          http://127.0.0.1:8080/api/v1/orders
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("OMS_API_KEY") or "")
wrk.body = '{"channel":"web","customer":{"name":"Bench Client","email":"bench@example.com"},' ..
  '"items":[{"sku":"TEE-BLK-M","name":"T-shirt","quantity":1,"unit_price":"24.90"}],' ..
  '"currency":"EUR","payment_method":"cash_on_delivery","test":true}'

function response(status, headers, body)
  if status ~= 201 then
    io.stderr:write("HTTP " .. status .. ": " .. body .. "\n")
  end
end
