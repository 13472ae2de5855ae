// A spec that fails on purpose: `supercheck run ... --wait` exits 1 and names the failing test.
import { test, expect } from '@playwright/test';

test('the basket starts with three items', async ({ page }) => {
  await page.goto(process.env.TARGET_URL + '/');
  await expect(page.locator('#status')).toHaveText('3 items in your basket.', { timeout: 2000 });
});
