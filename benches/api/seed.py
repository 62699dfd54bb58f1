"""Seeds the bench shop through its GraphQL API: 200 published products with stock in
category "Bench", and 50 confirmed orders of one customer. Writes the last order's id
and the customer's token into the work directory."""
import json
import sys
import time
import urllib.request

url, work = sys.argv[1], sys.argv[2]


def gql(query, variables=None, token=None, position=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if position:
        headers["X-Min-Position"] = position
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    with urllib.request.urlopen(urllib.request.Request(url, body, headers)) as response:
        answer = json.load(response)
    if answer.get("errors"):
        raise SystemExit(f"seed failed: {answer['errors']}")
    return answer["data"]


def login(email):
    data = gql('mutation($e: String!) { sessionCreate(input: { email: $e, password: "bench-password" }) '
               "{ session { accessToken } userErrors { message } } }", {"e": email})
    return data["sessionCreate"]["session"]["accessToken"]


admin, customer = login("admin@bench.local"), login("customer@bench.local")
for i in range(200):
    sku = f"BENCH-{i:03}"
    created = gql("mutation($input: ProductCreateInput!) { productCreate(input: $input) { product { id } userErrors { message } } }",
                  {"input": {"name": f"Bench product {i}", "description": "for load", "category": "Bench",
                             "variants": [{"sku": sku, "name": "One", "price": {"amount": f"{5 + i % 50}.99", "currencyCode": "EUR"}}]}},
                  admin)
    product = created["productCreate"]["product"]["id"]
    gql("mutation($id: ID!) { productPublish(input: { id: $id }) { position } }", {"id": product}, admin)
    gql("mutation($sku: String!) { inventoryReceive(input: { sku: $sku, quantity: 1000, reference: \"seed\" }) { position } }",
        {"sku": sku}, admin)
order_ids = []
for i in range(50):
    placed = gql("mutation($input: OrderPlaceInput!) { orderPlace(input: $input) { order { id } userErrors { message } } }",
                 {"input": {"lines": [{"sku": f"BENCH-{i:03}", "quantity": 2}, {"sku": f"BENCH-{i + 100:03}", "quantity": 1}],
                            "paymentToken": "tok_visa",
                            "shippingAddress": {"name": "Bench", "line1": "1 Load St", "city": "Perf", "postalCode": "1000", "countryCode": "DE"}}},
                 customer)
    order_ids.append(placed["orderPlace"]["order"]["id"])
deadline = time.time() + 60
while time.time() < deadline:
    status = gql("query($id: ID!) { order(id: $id) { status } }", {"id": order_ids[-1]}, customer)["order"]["status"]
    if status == "CONFIRMED":
        break
    time.sleep(0.2)
else:
    raise SystemExit("the last seeded order did not reach CONFIRMED")
open(f"{work}/order_id", "w").write(order_ids[-1])
open(f"{work}/customer_token", "w").write(customer)
