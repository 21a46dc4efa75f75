// The official MCP TypeScript SDK client against a route with a tool
// policy, as a voice platform's agent would connect: Streamable HTTP,
// `X-Call-Id` and the route key as headers. Lists the tools, calls an
// allowed and a denied one; prints one JSON line.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, callId, key] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { "X-Call-Id": callId, "x-headgate-key": key } },
});
const client = new Client({ name: "headgate-interop", version: "1.0.0" });
await client.connect(transport);
const out = {};
out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
const ok = await client.callTool({ name: "search_orders", arguments: { q: "shoes" } });
out.allowed = ok.content[0].text;
try {
  const r = await client.callTool({ name: "delete_account", arguments: {} });
  out.denied = { ran: true, result: r };
} catch (e) {
  out.denied = { message: e.message, code: e.code, data: e.data };
}
await client.close();
console.log(JSON.stringify(out));
