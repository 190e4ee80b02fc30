// Evaluates IAM requests with @cloud-copilot/iam-simulate (a real evaluator of identity,
// resource and organization policies and every condition operator), for the test suite.
// Reads a JSON array of {name, simulation} on stdin; writes a JSON array of
// {name, result, errors, ignoredContextKeys} on stdout, one per case, in order. Strict mode:
// the request is evaluated exactly as given (a key it lacks makes a condition on it false);
// ignoredContextKeys lists keys it carries that do not apply to the action.
import { runSimulation } from '@cloud-copilot/iam-simulate'

const input = await new Promise((resolve, reject) => {
  let text = ''
  process.stdin.setEncoding('utf8')
  process.stdin.on('data', (chunk) => (text += chunk))
  process.stdin.on('end', () => resolve(text))
  process.stdin.on('error', reject)
})

const results = []
for (const { name, simulation } of JSON.parse(input)) {
  const response = await runSimulation(simulation, { simulationMode: 'Strict' })
  if (response.resultType === 'error') {
    results.push({ name, result: 'Error', errors: response.errors, ignoredContextKeys: [] })
    continue
  }
  const single = response.resultType === 'single' ? [response.result] : response.results
  results.push({
    name,
    result: response.overallResult,
    errors: null,
    ignoredContextKeys: [...new Set(single.flatMap((r) => r.ignoredContextKeys ?? []))]
  })
}
process.stdout.write(JSON.stringify(results))
