// One plain and one streamed chat completion with the openai npm package, in regular mode on any
// Node release: undici's EnvHttpProxyAgent reads HTTPS_PROXY, HTTP_PROXY and NO_PROXY, and as the
// global dispatcher it carries Node's built-in fetch (which the openai package uses) through the
// proxy. NODE_EXTRA_CA_CERTS makes Node trust the proxy's CA. Prints the usage it got, as JSON.
import { EnvHttpProxyAgent, setGlobalDispatcher } from "undici";
import OpenAI from "openai";

setGlobalDispatcher(new EnvHttpProxyAgent());

const client = new OpenAI({ maxRetries: 0 });
const model = process.argv[2] ?? "gpt-4o-mini";
const messages = [{ role: "user", content: "Say this is a test" }];
const plain = await client.chat.completions.create({ model, messages });
let streamed = null;
const stream = await client.chat.completions.create({ model, messages, stream: true, stream_options: { include_usage: true } });
for await (const chunk of stream) {
  if (chunk.usage) streamed = chunk.usage;
}
console.log(JSON.stringify({ plain: plain.usage, streamed }));
