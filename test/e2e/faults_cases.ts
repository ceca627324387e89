export interface FaultCase {
  id: string;
  fault: string;
  expectExit: number;
  expectMessage: string;
  property: string;
}
export const FAULT_CASES: FaultCase[] = [];
